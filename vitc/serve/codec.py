"""Request bodies in, encoded images out, and tensors back: the wire formats of the three protocols.

Every problem is a RequestError carrying the HTTP status and a message naming the offending item, so a
client learns which of its images was refused.
"""
import base64
import binascii
import json
import math
import re
import struct

import numpy as np
import orjson

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
V2_HEADER = "inference-header-content-length"


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_json(body):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise RequestError(400, f"the body is not valid JSON: {err}") from None


def b64decode(text, what):
    """Strict base64 (standard alphabet, padding required): a typo is an error, not silently skipped bytes."""
    if not isinstance(text, str):
        raise RequestError(400, f"{what}: expected a base64 string, got {json_type(text)}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f"{what}: invalid base64 ({err})") from None


def image_from_string(text, what):
    """A data URI (data:image/png;base64,...) or bare base64 -> encoded image bytes."""
    if not isinstance(text, str):
        raise RequestError(400, f"{what}: expected a string (data URI or base64 image), got {json_type(text)}")
    match = _DATA_URI.match(text)
    if match:
        if not match.group("b64"):
            raise RequestError(400, f"{what}: a data URI must be base64-encoded (';base64,')")
        if match.group("mime") and not match.group("mime").lower().startswith("image/"):
            raise RequestError(400, f"{what}: data URI of type {match.group('mime')!r}, expected image/*")
        text = text[match.end():]
    elif text.startswith(("http://", "https://")):
        raise RequestError(400, f"{what}: URLs are not fetched by the server; send the image as base64")
    elif " " in text.strip():  # base64 has no spaces: this is text
        raise RequestError(400, f"{what}: text input, but this model has no text tower; send images as data URIs "
                                "or base64")
    return b64decode(text, what)


def to_json(value):
    """Compact JSON bytes (orjson: several times json.dumps on an answer holding embeddings). Each number of a
    float32 array is the shortest text that reads back to the same float32 bits. NaN and infinities are
    refused (ValueError), as json.dumps(allow_nan=False) did: orjson writes them as null, so an answer with
    a null in it is checked (the values, not the text: a null may also be a None or part of a string)."""
    text = orjson.dumps(value, default=_as_list, option=orjson.OPT_SERIALIZE_NUMPY)
    if b"null" in text:
        _refuse_non_finite(value)
    return text


def _as_list(value):
    """What orjson leaves to `default`: numpy arrays it does not write itself (not C-contiguous, other types)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _refuse_non_finite(value):
    if isinstance(value, np.ndarray):
        finite = not np.issubdtype(value.dtype, np.floating) or np.isfinite(value).all()
    elif isinstance(value, dict):
        finite = all(_refuse_non_finite(x) for x in value.values())
    elif isinstance(value, (list, tuple)):
        finite = all(_refuse_non_finite(x) for x in value)
    else:
        finite = not isinstance(value, (float, np.floating)) or math.isfinite(value)
    if not finite:
        raise ValueError("out of range float values (inf / nan) are not JSON compliant")
    return True


def json_type(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def list_of(value, what):
    """A JSON value that may be one item or an array of them -> (list, was_a_list)."""
    if isinstance(value, list):
        if not value:
            raise RequestError(400, f"{what}: expected at least one item, got an empty array")
        return value, True
    return [value], False


def top_k_of(value, default, what="top_k"):
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(400, f"{what} must be a positive integer, got {json.dumps(value)}")
    return value


# ---- Open Inference Protocol v2 -----------------------------------------------------------------------

def v2_request(body, header_length):
    """(request dict, binary tail) of a v2 infer body, JSON alone or JSON + binary (Triton's extension)."""
    if header_length is None:
        return _object(parse_json(body), "the request"), b""
    try:
        n = int(header_length)
    except ValueError:
        raise RequestError(400, f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
    if not 0 < n <= len(body):
        raise RequestError(400, f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
    return _object(parse_json(body[:n]), "the request"), body[n:]


def _object(value, what):
    if not isinstance(value, dict):
        raise RequestError(400, f"{what} must be a JSON object, got {json_type(value)}")
    return value


def v2_images(request, binary, text=False):
    """The encoded images of the one BYTES input: base64 strings in JSON, or length-prefixed binary data;
    text=True: strings (as they are in JSON, UTF-8 in binary data)."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = f"{len(inputs)} inputs" if isinstance(inputs, list) else json_type(inputs)
        raise RequestError(400, f"'inputs' must be an array of exactly one tensor (the images), got {got}")
    tensor = _object(inputs[0], "inputs[0]")
    name = tensor.get("name")
    what = f"input {name!r}"
    if tensor.get("datatype") != "BYTES":
        raise RequestError(400, f"{what}: datatype must be BYTES (encoded images), got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                               for d in shape):
        raise RequestError(400, f"{what}: shape must be an array of non-negative integers, got {shape!r}")
    count = math.prod(shape)  # 1 for a scalar shape []
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size != len(binary):
            raise RequestError(400, f"{what}: binary_data_size {size!r} does not match the {len(binary)} "
                                    "bytes after the JSON header")
        blobs = _unpack_bytes(binary, what)
        if text:
            blobs = [_utf8(b, f"{what} item {i}") for i, b in enumerate(blobs)]
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise RequestError(400, f"{what}: 'data' must be an array of base64 strings, got {json_type(data)}")
        flat = _flatten(data)
        blobs = [_text(s, f"{what} item {i}") if text else b64decode(s, f"{what} item {i}")
                 for i, s in enumerate(flat)]
    if len(blobs) != count or count == 0:
        raise RequestError(400, f"{what}: shape {shape} holds {count} items, got {len(blobs)} images")
    return blobs


def _text(item, what):
    if not isinstance(item, str):
        raise RequestError(400, f"{what}: a text must be a string, got {json_type(item)}")
    return item


def _utf8(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"{what}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _flatten(data):
    out = []
    for x in data:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out


def _unpack_bytes(buffer, what):
    """Triton's BYTES serialization: each element a little-endian uint32 length, then that many bytes."""
    out, pos = [], 0
    while pos < len(buffer):
        if pos + 4 > len(buffer):
            raise RequestError(400, f"{what}: binary data truncated in the length of item {len(out)}")
        (n,) = struct.unpack_from("<I", buffer, pos)
        pos += 4
        if pos + n > len(buffer):
            raise RequestError(400, f"{what}: binary data truncated in item {len(out)} ({n} bytes announced)")
        out.append(bytes(buffer[pos:pos + n]))
        pos += n
    return out


def pack_bytes(items):
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def v2_response(outputs, binary):
    """outputs: [(name, datatype, numpy array)]. Returns (body, extra headers)."""
    entries, blobs = [], []
    for name, datatype, array in outputs:
        entry = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary.get(name, False):
            blob = (pack_bytes([s.encode() for s in array.reshape(-1)]) if datatype == "BYTES"
                    else np.ascontiguousarray(array, dtype="<f4").tobytes())
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1) if array.dtype == np.float32 else array.reshape(-1).tolist()
        entries.append(entry)
    return entries, blobs
