"""The one place that imports the bindings componentize-py generates for the module's world.

Every world that imports `modelhost:models/model-manager` has the same two interfaces; the types
interface gets the same Python name in each because the build names it explicitly
(`--import-interface-name modelhost:models/types@0.1.0=modelhost_types`).
"""

from enum import Enum

try:
    from componentize_py_types import Err
    from wit_world.imports import model_manager as host
    from wit_world.imports import modelhost_types as wit
except ImportError as missing:
    raise ImportError(
        "the modelhost SDK runs inside a component built by componentize-py: build with "
        "`componentize-py -d wit -w WORLD "
        "--import-interface-name 'modelhost:models/types@0.1.0=modelhost_types' "
        "componentize -p guest-sdk/python -p MODULE_DIR app` "
        f"({missing})"
    ) from missing

__all__ = ["Err", "host", "wit", "wit_name", "wit_member"]


def wit_name(member: Enum) -> str:
    """The WIT spelling of a generated enum member: `ErrorCode.MODEL_NOT_FOUND` is
    `"model-not-found"`."""
    return member.name.lower().replace("_", "-")


def wit_member(enum: type[Enum], name: str) -> Enum:
    """The member of a generated enum spelled `name` in the WIT (the inverse of `wit_name`)."""
    return enum[name.upper().replace("-", "_")]
