"""The one exception type for mistakes a user can fix (bad flag, missing data, corrupt file)."""


class UserError(Exception):
    """Printed by the CLI as a single line on stderr (no traceback), exit status 2."""
