"""Text fields the API accepts, declared so the OpenAPI document says exactly what passes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

# A character str.strip() keeps: any but the ones str.isspace() is true for, spelled out (a
# regex's \s differs between Python, Rust (pydantic) and JavaScript (JSON Schema) engines).
NOT_SPACE = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def non_blank(max_length: int) -> Any:  # a type for annotations
    """A string with a non-whitespace character, at most `max_length` long; stored stripped.

    Length and "not blank" are checked on the text as sent, then it is stripped: the
    schema's minLength/maxLength/pattern then describe exactly what is accepted (with the
    strip first, "\\x85" passed minLength 1 in the schema but was empty for the app).
    """
    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=max_length, pattern=NOT_SPACE),
        AfterValidator(str.strip),
    ]
