"""Real S3 clients (boto3, and urllib for presigned URLs) for the Rust S3 tests, and the
demo S3 backend's setup for scripts/quickstart.

Usage:
  s3_client.py upstream ENDPOINT
      Sets up moto's server as a signature-checking upstream: an IAM user with a key pair and
      an allow-all policy (moto checks SigV4 once its no-auth allowance is used up), and the
      buckets the tests and the quickstart demo use (reports, sensitive-bucket with
      secret.txt). Prints {"access_key_id", "secret_access_key"}.
  s3_client.py run SPEC_JSON
      Runs the steps in SPEC_JSON against Shoal and prints one JSON line per step with what
      happened ({"step", "ok", "status", "code", ...}); the Rust test asserts on them.

Every client call is real botocore: signing, retries off, and error parsing of the S3 XML.
"""

import hashlib
import json
import socket
import sys
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

BUCKETS = ["reports", "sensitive-bucket"]


def client(endpoint, key_id, secret, addressing="path"):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def upstream(endpoint):
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="shoal-upstream")
    key = iam.create_access_key(UserName="shoal-upstream")["AccessKey"]
    iam.put_user_policy(
        UserName="shoal-upstream",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    s3 = client(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    # Put straight into the upstream: only reads through Shoal count as accesses.
    s3.put_object(Bucket="sensitive-bucket", Key="secret.txt", Body=b"classified")
    print(
        json.dumps(
            {
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
            }
        )
    )


def resolve_to(mapping):
    """Host names in `mapping` (and their subdomains) resolve to the given IP: `*.localhost`
    and test domains do not resolve here, and virtual-host addressing needs them."""
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        for domain, ip in mapping.items():
            if host == domain or (isinstance(host, str) and host.endswith("." + domain)):
                return real(ip, *args, **kwargs)
        return real(host, *args, **kwargs)

    socket.getaddrinfo = fake


def outcome(step, fn):
    try:
        extra = fn() or {}
        result = {"step": step, "ok": True, **extra}
    except ClientError as e:
        meta = e.response.get("ResponseMetadata", {})
        result = {
            "step": step,
            "ok": False,
            "status": meta.get("HTTPStatusCode"),
            "code": e.response.get("Error", {}).get("Code"),
            "message": e.response.get("Error", {}).get("Message"),
            "request_id": e.response.get("Error", {}).get("RequestId")
            or meta.get("RequestId"),
        }
    print(json.dumps(result), flush=True)


def run(spec):
    resolve_to(spec.get("resolve", {}))
    endpoints = spec["endpoints"]
    key_id, secret = spec["access_key_id"], spec["secret_access_key"]
    clients = [client(e, key_id, secret) for e in endpoints]
    s3 = clients[0]
    for step in spec["steps"]:
        # `do` names the action when one action runs under several step labels.
        name = step["step"]
        action = step.get("do", name)
        if action == "list_buckets":
            outcome(
                name,
                lambda: {"buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"])},
            )
        elif action == "put_get":
            body = step["body"].encode()

            def put_get():
                s3.put_object(Bucket=step["bucket"], Key=step["key"], Body=body)
                got = s3.get_object(Bucket=step["bucket"], Key=step["key"])["Body"].read()
                head = s3.head_object(Bucket=step["bucket"], Key=step["key"])
                # A prefix without "/": moto's own signature check fails on an encoded "/"
                # in the query, with or without Shoal in between.
                listed = s3.list_objects_v2(Bucket=step["bucket"], Prefix=step["key"][:2])
                return {
                    "same": got == body,
                    "length": head["ContentLength"],
                    "listed": [o["Key"] for o in listed.get("Contents", [])],
                }

            outcome(name, put_get)
        elif action == "multipart":
            parts = [bytes([65 + i]) * size for i, size in enumerate(step["part_sizes"])]

            def multipart():
                upload = s3.create_multipart_upload(Bucket=step["bucket"], Key=step["key"])
                done = []
                for number, data in enumerate(parts, start=1):
                    etag = s3.upload_part(
                        Bucket=step["bucket"],
                        Key=step["key"],
                        PartNumber=number,
                        UploadId=upload["UploadId"],
                        Body=data,
                    )["ETag"]
                    done.append({"PartNumber": number, "ETag": etag})
                s3.complete_multipart_upload(
                    Bucket=step["bucket"],
                    Key=step["key"],
                    UploadId=upload["UploadId"],
                    MultipartUpload={"Parts": done},
                )
                got = s3.get_object(Bucket=step["bucket"], Key=step["key"])["Body"].read()
                expected = hashlib.sha256(b"".join(parts)).hexdigest()
                return {"sha256_match": hashlib.sha256(got).hexdigest() == expected, "bytes": len(got)}

            outcome(name, multipart)
        elif action == "upload_file":
            # boto3's managed transfer: multipart with parallel parts above the threshold.
            from boto3.s3.transfer import TransferConfig

            data = hashlib.sha256(b"seed").digest() * (step["bytes"] // 32)

            def upload_file():
                import io

                s3.upload_fileobj(
                    io.BytesIO(data),
                    step["bucket"],
                    step["key"],
                    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, max_concurrency=4),
                )
                out = io.BytesIO()
                s3.download_fileobj(step["bucket"], step["key"], out)
                return {"same": out.getvalue() == data, "bytes": len(out.getvalue())}

            outcome(name, upload_file)
        elif action == "presigned_get":

            def presigned():
                url = s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": step["bucket"], "Key": step["key"]},
                    ExpiresIn=step.get("expires", 300),
                )
                if step.get("tamper"):
                    url = url.replace("?", "x?", 1)  # another key than the one signed
                try:
                    with urllib.request.urlopen(url, timeout=30) as r:
                        return {"status": r.status, "body": r.read().decode()}
                except urllib.error.HTTPError as e:
                    body = e.read().decode()
                    return {"status": e.code, "body": body}

            outcome(name, presigned)
        elif action == "virtual_host":
            vclient = client(step["endpoint"], key_id, secret, addressing="virtual")

            def virtual():
                vclient.put_object(Bucket=step["bucket"], Key=step["key"], Body=b"virtual")
                got = vclient.get_object(Bucket=step["bucket"], Key=step["key"])["Body"].read()
                return {"body": got.decode()}

            outcome(name, virtual)
        elif action == "copy":

            def copy():
                s3.copy_object(
                    Bucket=step["bucket"],
                    Key=step["key"],
                    CopySource={"Bucket": step["from_bucket"], "Key": step["from_key"]},
                )
                got = s3.get_object(Bucket=step["bucket"], Key=step["key"])["Body"].read()
                return {"bytes": len(got)}

            outcome(name, copy)
        elif action == "wrong_secret":
            bad = client(endpoints[0], key_id, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
            outcome(name, lambda: bad.list_objects_v2(Bucket=step["bucket"]) and {})
        elif action == "unknown_key":
            bad = client(endpoints[0], "SHLUNKNOWNUNKNOWN0000", secret)
            outcome(name, lambda: bad.list_objects_v2(Bucket=step["bucket"]) and {})
        elif action == "round_robin_gets":
            for i in range(step["count"]):
                c = clients[i % len(clients)]
                if step.get("new_connection"):
                    # A client of its own: a load balancer sees a new connection each time.
                    c = client(endpoints[i % len(endpoints)], key_id, secret)
                outcome(
                    f"{name}:{i + 1}",
                    lambda c=c: {
                        "bytes": len(
                            c.get_object(Bucket=step["bucket"], Key=step["key"])["Body"].read()
                        )
                    },
                )
        else:
            raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    if sys.argv[1] == "upstream":
        upstream(sys.argv[2])
    elif sys.argv[1] == "run":
        run(json.loads(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
