"""Stage 2, the email: compose (jinja2 -> MJML -> premailer), checks, build, archive."""
