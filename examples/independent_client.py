#!/usr/bin/env python3
"""A tool written without lti2: standard library only. Prints a signed jwt-bearer assertion.

    python3 examples/independent_client.py SUB SECRET AUTHORIZE_URL [JTI]
"""
import base64, hashlib, hmac, json, sys, time, uuid

def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

sub, secret, aud = sys.argv[1], sys.argv[2], sys.argv[3]
jti = sys.argv[4] if len(sys.argv) > 4 else str(uuid.uuid4())
now = int(time.time())
header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64url(json.dumps({"sub": sub, "aud": aud, "exp": now + 60, "iat": now, "jti": jti}).encode())
signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64url(signature)}")
