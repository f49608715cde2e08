"""The audience: subscribers and their statuses, signed tokens and keys, every public link."""
