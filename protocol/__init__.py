"""Wire protocol v1: topic names, payload models, encode/decode. The only place that knows the wire.

See PROTOCOL.md at the top of the repository for the full description.
"""

from touchlamp.protocol.codec import (
    decode_availability,
    decode_glow,
    decode_group,
    decode_pair_request,
    decode_pair_response,
    decode_touch,
    encode,
    encode_availability,
)
from touchlamp.protocol.enrollment import TOKEN_PREFIX, Enrollment, decode_token, encode_token
from touchlamp.protocol.errors import ProtocolError
from touchlamp.protocol.messages import (
    MAX_GROUP_SIZE,
    MAX_PAYLOAD_BYTES,
    Availability,
    Glow,
    GroupMember,
    GroupState,
    PairAction,
    PairRequest,
    PairResponse,
    Touch,
    color_to_rgb,
    rgb_to_color,
    touch_id,
)
from touchlamp.protocol.topics import (
    DEFAULT_ROOT,
    LAMP_ID_PATTERN,
    Kind,
    TopicMatch,
    Topics,
    validate_lamp_id,
)

__all__ = [
    "DEFAULT_ROOT",
    "LAMP_ID_PATTERN",
    "MAX_GROUP_SIZE",
    "MAX_PAYLOAD_BYTES",
    "TOKEN_PREFIX",
    "Availability",
    "Enrollment",
    "Glow",
    "GroupMember",
    "GroupState",
    "Kind",
    "PairAction",
    "PairRequest",
    "PairResponse",
    "ProtocolError",
    "TopicMatch",
    "Topics",
    "Touch",
    "color_to_rgb",
    "decode_availability",
    "decode_glow",
    "decode_group",
    "decode_pair_request",
    "decode_pair_response",
    "decode_token",
    "decode_touch",
    "encode",
    "encode_availability",
    "encode_token",
    "rgb_to_color",
    "touch_id",
    "validate_lamp_id",
]
