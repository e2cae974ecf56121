"""Builds, with PyKMIP's own message classes and encoder, every KMIP request sectorcrypt sends.

Prints `NAME HEX` per request, with the same sample arguments as `messages::samples()` in
src/keys/kmip/messages.rs; tests/kmip.rs compares them byte for byte with sectorcrypt's encoding.
"""
import warnings

warnings.simplefilter("ignore")

from kmip.core import attributes, enums, objects  # noqa: E402
from kmip.core import utils  # noqa: E402
from kmip.core.factories import attributes as attribute_factory  # noqa: E402
from kmip.core.messages import contents, messages, payloads  # noqa: E402

VERSION = enums.KMIPVersion.KMIP_1_2
factory = attribute_factory.AttributeFactory()
A = enums.AttributeType


def name(value):
    return factory.create_attribute(
        A.NAME, attributes.Name.create(value, enums.NameType.UNINTERPRETED_TEXT_STRING)
    )


def request(operation, payload):
    header = messages.RequestHeader(
        protocol_version=contents.ProtocolVersion(1, 2), batch_count=contents.BatchCount(1)
    )
    item = messages.RequestBatchItem(operation=contents.Operation(operation), request_payload=payload)
    return messages.RequestMessage(request_header=header, batch_items=[item])


def uid(value):
    return attributes.UniqueIdentifier(value)


usage = [
    enums.CryptographicUsageMask.ENCRYPT,
    enums.CryptographicUsageMask.DECRYPT,
    enums.CryptographicUsageMask.WRAP_KEY,
    enums.CryptographicUsageMask.UNWRAP_KEY,
]
template = objects.TemplateAttribute(
    attributes=[
        factory.create_attribute(A.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.AES),
        factory.create_attribute(A.CRYPTOGRAPHIC_LENGTH, 256),
        factory.create_attribute(A.CRYPTOGRAPHIC_USAGE_MASK, usage),
        name("sectorcrypt-sample"),
    ]
)
O = enums.Operation
requests = [
    ("create", request(O.CREATE, payloads.CreateRequestPayload(
        object_type=enums.ObjectType.SYMMETRIC_KEY, template_attribute=template))),
    ("activate", request(O.ACTIVATE, payloads.ActivateRequestPayload(unique_identifier=uid("17")))),
    ("get", request(O.GET, payloads.GetRequestPayload(
        unique_identifier="17", key_format_type=enums.KeyFormatType.RAW))),
    ("get-attributes", request(O.GET_ATTRIBUTES, payloads.GetAttributesRequestPayload(
        unique_identifier="17", attribute_names=["State"]))),
    ("locate", request(O.LOCATE, payloads.LocateRequestPayload(attributes=[
        factory.create_attribute(A.OBJECT_TYPE, enums.ObjectType.SYMMETRIC_KEY), name("vm-17")]))),
    ("revoke", request(O.REVOKE, payloads.RevokeRequestPayload(
        unique_identifier=uid("17"),
        revocation_reason=objects.RevocationReason(code=enums.RevocationReasonCode.KEY_COMPROMISE)))),
    ("destroy", request(O.DESTROY, payloads.DestroyRequestPayload(unique_identifier=uid("17")))),
    ("discover-versions", request(O.DISCOVER_VERSIONS, payloads.DiscoverVersionsRequestPayload())),
    ("query", request(O.QUERY, payloads.QueryRequestPayload(query_functions=[
        enums.QueryFunction.QUERY_SERVER_INFORMATION, enums.QueryFunction.QUERY_OPERATIONS]))),
]
for label, message in requests:
    out = utils.BytearrayStream()
    message.write(out, kmip_version=VERSION)
    print(label, out.buffer.hex())
