"""Loopback emulators of the email providers' HTTP APIs, for integration tests.

See README.md beside this file for what each emulator implements.
"""
