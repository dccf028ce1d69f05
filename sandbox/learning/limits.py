"""The reference Learning server's input limits, in one place (documented in docs/sandbox-learning.md).

Learning does not publish its field lengths; these are the limits this contract
promises. A value over its limit fails (its row, or the request), it is never truncated.
"""

from __future__ import annotations

MAX_BATCH_ROWS = 1000
MAX_PAGE_SIZE = 1000
MAX_CHANGES_PER_PAGE = 1000

DOMAIN_LENGTH = 64
EXTERNAL_ID_LENGTH = 64  # DCIDs are numbers; 64 leaves room for any import id scheme
NAME_LENGTH = 100  # first_name, last_name, organization name
LOGIN_LENGTH = 100
EMAIL_LENGTH = 254  # RFC 5321 path limit
PASSWORD_LENGTH = 128
CLASS_NAME_LENGTH = 255  # "Course_Name (Section_Number) - Expression" can be long
CODE_LENGTH = 64
LEVEL_LENGTH = 32
ROLE_LENGTH = 16
AUTHENTICATION_TYPE_LENGTH = 16
GRADABLE_TITLE_LENGTH = 255
GRADABLE_DESCRIPTION_LENGTH = 4000
GRADABLE_TYPE_LENGTH = 32
SCORE_LENGTH = 32
POWERSCHOOL_HOST_LENGTH = 255
