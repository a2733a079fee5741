"""Make vectors.json: requests signed by the official Huawei Cloud Python SDK.

Every signature in vectors.json comes from huaweicloudsdkcore's own
`Signer` (SDK-HMAC-SHA256), with a fixed X-Sdk-Date so the file is stable.
hsmkey's verifier (src/serve/routes/huawei/sign.rs) must accept each "accept"
vector as it would arrive on the wire, and refuse the others for the
reason given. See README.md in this folder for how to run it.
"""

import base64
import copy
import json
import sys

import huaweicloudsdkcore
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

AK = "HSMKEYTESTAK0000001"
SK = "hsmkey-test-sk-0123456789abcdefghijklmnopqrstuv"
PROJECT = "0123456789abcdef0123456789abcdef"
DATE = "20261126T173000Z"
DATE_UNIX = 1795714200  # DATE in seconds since 1970 (UTC)
HOST = "127.0.0.1:8443"
UA = "huaweicloud-usdk-python/3.0"


def case(name, method, path, query=None, headers=None, body=None, expect="accept"):
    hdrs = {"User-Agent": UA, "X-Project-Id": PROJECT, "X-Sdk-Date": DATE}
    hdrs.update(headers or {})
    if body is not None and "Content-Type" not in hdrs:
        hdrs["Content-Type"] = "application/json"
    raw = body.encode("utf-8") if isinstance(body, str) else body
    request = SdkRequest(method=method, schema="http", host=HOST, resource_path=path,
                         query_params=list(query or []), header_params=hdrs, body=raw)

    # The canonical request and string to sign, on a copy: sign() rewrites
    # header values for the wire.
    probe = copy.deepcopy(request)
    signer = Signer(BasicCredentials(AK, SK, PROJECT))
    Signer._process_content_header(probe)
    when = Signer._process_header_time(probe)
    Signer._process_header_host(probe)
    signed = Signer._process_signed_headers(probe)
    canonical = signer._process_canonical_request(probe, signed)
    to_sign = signer._process_string_to_sign(canonical, when)

    Signer(BasicCredentials(AK, SK, PROJECT)).sign(request)
    # Header values were turned into latin-1 text for `requests`, which sends
    # their UTF-8 bytes: undo that to record what the server receives.
    wire_headers = [[k, v.encode("iso-8859-1").decode("utf-8")]
                    for k, v in request.header_params.items()]
    return {
        "name": name,
        "expect": expect,
        "method": method,
        "uri": request.uri,
        "headers": wire_headers,
        "body_base64": base64.b64encode(request.body or b"").decode(),
        "canonical_request": canonical,
        "string_to_sign": to_sign,
        "authorization": request.header_params["Authorization"],
    }


def main():
    pid = PROJECT
    import_params = json.dumps({"key_id": "0d0466b0-e727-4d9c-b35d-f84bb474a37f",
                                "wrapping_algorithm": "RSAES_OAEP_SHA_256"})
    cases = [
        case("kms get-parameters-for-import", "POST",
             f"/v1.0/{pid}/kms/get-parameters-for-import", body=import_params),
        case("kms import-key-material", "POST", f"/v1.0/{pid}/kms/import-key-material",
             body=json.dumps({"key_id": "0d0466b0-e727-4d9c-b35d-f84bb474a37f",
                              "import_token": "hk1.e30.AAAA",
                              "encrypted_key_material": "QUJD"})),
        case("csms backup, empty body", "POST", f"/v1/{pid}/secrets/payments-dek/backup"),
        case("csms restore", "POST", f"/v1/{pid}/secrets/restore",
             body=json.dumps({"secret_blob": "aGVsbG8="})),
        case("path already ends with a slash", "GET", f"/v1/{pid}/secrets/"),
        case("path segment percent-encoded by the SDK (slash, space, non-ASCII)", "POST",
             f"/v1/{pid}/secrets/a%2Fb%20c%C3%A9~d/backup"),
        case("query: unsorted, repeated, reserved and non-ASCII characters", "GET",
             f"/v1/{pid}/secrets",
             query=[("limit", 10), ("marker", "a b+c/d"), ("event_name", "é~*"),
                    ("tag", ["z", "a"]), ("empty", ""), ("flag", True)]),
        case("header with a value to trim and a non-ASCII value", "POST",
             f"/v1.0/{pid}/kms/get-parameters-for-import",
             headers={"X-Custom": "  spaced value  ", "X-Label": "clé"},
             body=import_params),
        case("header name with an underscore is not signed", "POST",
             f"/v1.0/{pid}/kms/get-parameters-for-import",
             headers={"X_Unsigned": "anything"}, body=import_params),
        case("DELETE, lower-case method given", "delete", f"/v1/{pid}/secrets/old"),
        case("binary body", "PUT", f"/v1/{pid}/objects/blob",
             headers={"Content-Type": "application/json;charset=UTF-8"},
             body=bytes(range(256))),
        case("non-JSON content type: the SDK leaves the body unsigned", "POST",
             f"/v1.0/{pid}/kms/import-key-material",
             headers={"Content-Type": "application/octet-stream"}, body=b"\x00\x01",
             expect="refuse: unsigned payload"),
    ]
    out = {
        "generator": "tests/vectors/huawei-sign/generate.py with huaweicloudsdkcore "
                     + getattr(huaweicloudsdkcore, "__version__", "3.1.219"),
        "access_key": AK,
        "secret_key": SK,
        "x_sdk_date": DATE,
        "x_sdk_date_unix": DATE_UNIX,
        "vectors": cases,
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
