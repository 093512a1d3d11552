"""Initiates the single-node replica set `rs0` on 127.0.0.1:PORT and waits until it has a writable primary."""
import sys
import time

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

ALREADY_INITIALIZED = 23


def main() -> None:
    port = int(sys.argv[1])
    client = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=20000)
    try:
        client.admin.command(
            "replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]}
        )
    except OperationFailure as error:
        if error.code != ALREADY_INITIALIZED:
            raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.admin.command("hello").get("isWritablePrimary"):
                return
        except PyMongoError:
            pass
        time.sleep(0.2)
    sys.exit(f"rs_initiate: no writable primary on port {port} after 60 s")


if __name__ == "__main__":
    main()
