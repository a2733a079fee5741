"""Huawei's own KMS client against `hsmkey serve` (run by scripts/huawei-sdk-test.sh).

Unchanged `huaweicloudsdkkms` with BasicCredentials(ak, sk, project_id) and
the server's endpoint: get import parameters, wrap a fresh AES-256 key to
the returned public key on the client side (the `cryptography` package),
import it. Then the same parameters again (refused: single use), and a
client with a wrong SK (refused: 401). Prints one JSON line with the key
id and the KCV the token should show for the imported key.

Environment: HK_ENDPOINT, HK_PROJECT_ID, HK_AK, HK_SK, HK_KEY_ID,
HK_WRAPPING_ALGORITHM (RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256).
"""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkkms.v2 import (
    CreateParametersForImportRequest,
    GetParametersForImportRequestBody,
    ImportKeyMaterialRequest,
    ImportKeyMaterialRequestBody,
    KmsClient,
)


def client(sk):
    credentials = BasicCredentials(os.environ["HK_AK"], sk, os.environ["HK_PROJECT_ID"])
    return (KmsClient.new_builder()
            .with_credentials(credentials)
            .with_endpoint(os.environ["HK_ENDPOINT"])
            .build())


def fail(message):
    print(f"huawei_kms_client: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    key_id = os.environ["HK_KEY_ID"]
    algorithm = os.environ.get("HK_WRAPPING_ALGORITHM", "RSAES_OAEP_SHA_1")
    kms = client(os.environ["HK_SK"])

    params = kms.create_parameters_for_import(CreateParametersForImportRequest(
        body=GetParametersForImportRequestBody(key_id=key_id, wrapping_algorithm=algorithm)))
    if params.key_id != key_id:
        fail(f"parameters for {params.key_id}, asked for {key_id}")

    # The client side: a fresh AES-256 key, wrapped with RSA-OAEP to the
    # server's public key, and its KCV (first 3 bytes of AES-ECB(key, 0^16)).
    material = os.urandom(32)
    encryptor = Cipher(algorithms.AES(material), modes.ECB()).encryptor()
    kcv = (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex()
    public_key = serialization.load_der_public_key(base64.b64decode(params.public_key))
    digest = hashes.SHA256() if algorithm.endswith("SHA_256") else hashes.SHA1()
    wrapped = public_key.encrypt(material, padding.OAEP(
        mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None))
    body = ImportKeyMaterialRequestBody(
        key_id=key_id, import_token=params.import_token,
        encrypted_key_material=base64.b64encode(wrapped).decode())
    kms.import_key_material(ImportKeyMaterialRequest(body=body))

    # Single use: the same parameters again are refused.
    try:
        kms.import_key_material(ImportKeyMaterialRequest(body=body))
        fail("the parameters worked twice")
    except exceptions.ClientRequestException as e:
        if e.status_code != 409 or e.error_code != "KMS.0310":
            fail(f"reuse: expected 409 KMS.0310, got {e.status_code} {e.error_code} {e.error_msg}")

    # A wrong SK: the signature does not verify.
    try:
        client(os.environ["HK_SK"] + "x").create_parameters_for_import(
            CreateParametersForImportRequest(body=GetParametersForImportRequestBody(
                key_id="00000000-0000-4000-8000-000000000000", wrapping_algorithm=algorithm)))
        fail("a wrong SK was accepted")
    except exceptions.ClientRequestException as e:
        if e.status_code != 401 or e.error_code != "APIGW.0301":
            fail(f"wrong SK: expected 401 APIGW.0301, got {e.status_code} {e.error_code} {e.error_msg}")

    print(json.dumps({"key_id": key_id, "kcv": kcv}))


if __name__ == "__main__":
    main()
