#!/usr/bin/env python3
"""What MongoDB spends per callback under several designs of event delivery (issue 27).

Not a test and not the service: a model of the writes and reads the service makes, replayed with pymongo
against a `mongod` you give it, so that designs can be compared before one is built. Documents and indexes
follow the code of 0.4.0: `fresh_transaction` (store/transactions.rs), `callback_document`
(store/document.rs), `event_document` and `indexes()` (store/events.rs), `ensure_indexes`
(store/transactions.rs, store/mongo.rs), the drain's batch (store/batch.rs) and the sender
(delivery/new_events.rs, delivery/outbox.rs). One endpoint is subscribed to every event.

Per batch of `--batch` callbacks (512, as the drain writes them), each variant does:

  0   no endpoint: read `endpoints`, `insert_many` transactions, `insert_many` callbacks (the floor).
  A   0.4.0: as 0, plus one `event_batches` document holding the batch's events; the sender reads it
      (`find_one` oldest), `find`s the events by `_id $in` (sent already?), `insert_many`s them into
      `events` delivered (with `events`' three indexes), `delete_one`s the batch document; and the TTL
      monitor's later expiry is modelled as a `delete_many` on the `expire` index of as many events,
      `--lag` batches old.
  B   outbox on the transaction: the transaction is inserted with `outbox: [event]` and `outbox_since`
      (partial index `{outbox_since: 1}` on `{$type: "date"}`); the sender `find`s on that index (oldest
      first, limit 512) and clears the delivered entries in ONE `update_many`
      (`$set: {outbox: []}, $unset: {outbox_since}`). Delivered events get no document.
  Bg  B, but cleared by one `bulk_write` of `update_one`s guarded by `event_version` (race-safe against
      a change that pushes a second event meanwhile).
  C1  B, plus the delivered events `insert_many`ed into `events` (one per round) and expired as in A.
  C2  B, plus one history document per round holding the round's delivered events (`_id` index and a
      TTL index only), expired by one `delete_one` per round, `--lag` rounds old.
  0U, AU, BU  as 0, A, B, with `--update-share` (30%) of each batch's callbacks updating a transaction
      of the previous batch (MTN PENDING, then SUCCESSFUL): the fold inserts every group as new
      (`insert_many`, the existing ones fail with a duplicate key), reads those in one `find`, and
      updates each (`update_one`, `version`-guarded, 16 at a time as the service does). In AU the update's event goes through
      `event_batches` as in A (and the sender's ordering read `pending_of` runs); in BU the same
      `update_one` also `$push`es the event into `outbox` and `$min`s `outbox_since`.

Each run uses a fresh database: `--warmup` batches first (not measured; the lagged expiries then find
events to delete), then a checkpoint (`fsync`), then `--batches` measured batches, then a checkpoint
again, so each run pays for writing its own dirty pages. Measured per callback:
  - mongod's CPU: user+sys from /proc/<pid>/stat (the pid is `serverStatus().pid`, so mongod must run on
    this machine), ticks / CLK_TCK;
  - oplog bytes: the `$bsonSize` of the `local.oplog.rs` entries of the benchmark's database written
    during the measured batches;
  - bytes written: WiredTiger's `block-manager.bytes written` (data and index pages, compressed,
    including the closing checkpoint) and `log.log bytes written` (the journal);
  - documents' bytes: the BSON size of the documents the client inserted;
  - operations: commands the client sent, and write statements (documents inserted, updated, deleted).
Variants run alternately (0 A B ... 0 A B ...) `--runs` times; the median and the spread (min-max) are
printed, and all samples are written as JSON (`--json`).

Writes use `{w: "majority", j: true}` and no retryable writes, like the service.

Run it against your own single-node replica set, not one that tests share:
  mkdir -p /tmp/measure-db && .tools/mongodb/fiftyone/db/bin/mongod --dbpath /tmp/measure-db --port 27090 \
      --replSet rs0 --bind_ip 127.0.0.1 --wiredTigerCacheSizeGB 0.25 \
      --setParameter diagnosticDataCollectionEnabled=false --fork --logpath /tmp/measure-db/mongod.log \
      --pidfilepath /tmp/measure-db/mongod.pid
  PYTHONPATH=.tools/mongodb/py python3 scripts/rs_initiate.py 27090
  PYTHONPATH=.tools/mongodb/py python3 scripts/bench_delivery_designs.py --port 27090 --runs 5
  kill "$(cat /tmp/measure-db/mongod.pid)"
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import bson
from bson import Decimal128, ObjectId
from pymongo import ASCENDING, IndexModel, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError
from pymongo.write_concern import WriteConcern

DATABASE = "bench_delivery"
ENDPOINT = "ep_bench_0001"
RETENTION = dt.timedelta(days=30)
VARIANTS = ["0", "A", "B", "Bg", "C1", "C2", "0U", "AU", "BU"]


# ---------------------------------------------------------------------------------------------------
# Documents, shaped as the service writes them.

def utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def iso(at):
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def event_id(transaction_id, version):
    return "evt_" + hashlib.sha256(f"{transaction_id}#{version}".encode()).digest()[:16].hex()


class Callback:
    """One callback: its provider, flow, key, status and payload."""

    def __init__(self, serial, run, kind, status="successful", key=None):
        self.serial = serial
        self.kind = kind
        self.status = status
        self.key = key or f"{run}-{serial}"
        self.received_at = utcnow()
        if kind == "mpesa":
            self.provider, self.callback_type, self.flow = "mpesa", "stk_push", "stk_push"
            self.currency, self.msisdn, self.receipt = "KES", f"2547{serial % 10**8:08d}", f"R{serial:09d}"
            self.result_code, self.result_description = "0", "The service request is processed successfully."
            self.payload = {"Body": {"stkCallback": {
                "MerchantRequestID": f"29115-{serial}-1",
                "CheckoutRequestID": f"ws_CO_{self.key}",
                "ResultCode": 0,
                "ResultDesc": self.result_description,
                "CallbackMetadata": {"Item": [
                    {"Name": "Amount", "Value": 1000.0},
                    {"Name": "MpesaReceiptNumber", "Value": self.receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": 20191219102115},
                    {"Name": "PhoneNumber", "Value": 254708374149},
                ]},
            }}}
        elif kind == "mtn":
            self.provider, self.callback_type, self.flow = "mtn", "collection", "collection"
            self.currency, self.msisdn = "UGX", f"2567{serial % 10**8:08d}"
            self.receipt = f"{serial:08d}" if status == "successful" else None
            self.result_code, self.result_description = None, None
            self.payload = {
                "referenceId": self.key, "externalId": f"ext_ref_{serial}", "status": status.upper(),
                "amount": "1000.00", "currency": "UGX",
                "payer": {"partyIdType": "MSISDN", "partyId": self.msisdn},
                "payerMessage": "Payment for services rendered, order of the week",
                "payeeNote": f"Order #{serial} for the merchant's shop, paid by mobile money",
            }
            if self.receipt:
                self.payload["financialTransactionId"] = self.receipt
        else:
            self.provider, self.callback_type, self.flow = "airtel", "payment", "payment"
            self.currency, self.msisdn, self.receipt = "KES", f"2547{serial % 10**8:08d}", f"CI{serial:010d}"
            self.result_code, self.result_description = "TS", "Transaction Success"
            self.payload = {"transaction": {
                "id": self.key, "message": "Paid KES 1000 to merchant shop for order of the week",
                "status_code": "TS", "airtel_money_id": self.receipt, "amount": "1000",
                "currency": "KES", "msisdn": self.msisdn,
            }, "hash": hashlib.sha256(self.key.encode()).hexdigest()}

    @property
    def transaction_id(self):
        return f"{self.provider}|{self.flow}|{self.key}"

    @property
    def document_id(self):
        return f"{self.provider}|{self.callback_type}|{self.status}|{self.key}"

    def document(self):
        """`callback_document`: the stored callback, ~1 KB with its payload."""
        delivery = ObjectId()
        return {
            "_id": self.document_id,
            "delivery_id": delivery,
            "provider": self.provider,
            "callback_type": self.callback_type,
            "provider_transaction_id": self.key,
            "status": self.status,
            "reason": None,
            "result_code": self.result_code,
            "result_description": self.result_description,
            "amount": Decimal128("1000.00"),
            "currency": self.currency,
            "msisdn": self.msisdn,
            "receipt": self.receipt,
            "transaction_time": self.received_at,
            "transaction_time_raw": "20191219102115",
            "callback_data": self.payload,
            "received_at": self.received_at,
            "last_received_at": self.received_at,
            "deliveries": 1,
            "delivery_ids": [delivery],
            "processed": True,
        }

    def transaction(self):
        """`fresh_transaction`: the transaction this callback starts."""
        document = {
            "_id": self.transaction_id,
            "provider": self.provider,
            "flow": self.flow,
            "transaction_key": self.key,
            "status": self.status,
            "reason": None,
            "amount": Decimal128("1000.00"),
            "currency": self.currency,
            "msisdn": self.msisdn,
            "receipt": self.receipt,
            "settled_by": "callback" if self.status == "successful" else None,
            "verified": False,
            "first_callback_at": self.received_at,
            "last_callback_at": self.received_at,
        }
        if self.status == "pending":
            document["query_due"] = self.received_at
        document.update({
            "callback_ids": [self.document_id],
            "conflict": False,
            "conflicts": [],
            "conflict_count": 0,
            "linked_transactions": [],
            "version": 1,
            "updated_at": utcnow(),
            "event_version": 1,
            "event_type": f"transaction.{self.status}",
        })
        return document


def payload(transaction, version, now):
    """`payload`: the exact bytes delivered (the transaction's public view)."""
    return json.dumps({
        "type": transaction["event_type"],
        "timestamp": iso(now),
        "data": {
            "provider": transaction["provider"], "flow": transaction["flow"],
            "transaction_key": transaction["transaction_key"], "status": transaction["status"],
            "reason": transaction["reason"], "amount": "1000.00", "currency": transaction["currency"],
            "msisdn": transaction["msisdn"], "receipt": transaction["receipt"], "linked_transactions": [],
            "conflict": False, "conflict_count": 0, "settled_by": transaction["settled_by"],
            "verified": False, "unresolved": False,
            "first_callback_at": iso(transaction["first_callback_at"]),
            "last_callback_at": iso(transaction["last_callback_at"]), "version": version,
        },
    }, separators=(",", ":"))


def pending_target(now):
    return {"endpoint": ENDPOINT, "status": "pending", "attempts": 0, "next_at": now}


def event_document(transaction, version, now):
    """`event_document`: a new event, pending, targeted at the one endpoint."""
    return {
        "_id": event_id(transaction["_id"], version),
        "type": transaction["event_type"],
        "provider": transaction["provider"],
        "flow": transaction["flow"],
        "transaction_key": transaction["transaction_key"],
        "transaction_id": transaction["_id"],
        "version": version,
        "created_at": now,
        "acknowledged_at": transaction["last_callback_at"],
        "payload": payload(transaction, version, now),
        "status": "pending",
        "due_at": now,
        "targets": [pending_target(now)],
    }


def outbox_entry(transaction, version, now):
    """B's outbox entry: the event less what the transaction holds already."""
    return {
        "id": event_id(transaction["_id"], version),
        "type": transaction["event_type"],
        "version": version,
        "created_at": now,
        "acknowledged_at": transaction["last_callback_at"],
        "payload": payload(transaction, version, now),
        "targets": [pending_target(now)],
    }


def attempt(now):
    return {"endpoint": ENDPOINT, "attempt": 1, "at": now, "status_code": 200, "duration_ms": 12,
            "response": "{\"received\":true}", "error": None}


def delivered(event, now):
    """`with_state(.., state(delivered), attempts)`: the event as 0.4.0's sender inserts it."""
    event = dict(event)
    event.pop("due_at", None)
    event["targets"] = [{"endpoint": ENDPOINT, "status": "delivered", "attempts": 1, "next_at": now}]
    event["status"] = "delivered"
    event["expire_at"] = now + RETENTION
    event["attempts"] = [attempt(now)]
    return event


def delivered_from_outbox(transaction, entry, now):
    """A delivered event rebuilt from B's outbox entry, for C1 and C2."""
    event = {
        "_id": entry["id"], "type": entry["type"], "provider": transaction["provider"],
        "flow": transaction["flow"], "transaction_key": transaction["transaction_key"],
        "transaction_id": transaction["_id"], "version": entry["version"],
        "created_at": entry["created_at"], "acknowledged_at": entry["acknowledged_at"],
        "payload": entry["payload"], "targets": entry["targets"],
    }
    return delivered(event, now)


# ---------------------------------------------------------------------------------------------------
# Indexes, as the service creates them.

def partial(keys, name, expression, **options):
    return IndexModel(keys, name=name, partialFilterExpression=expression, **options)


def create_indexes(db, variant):
    db.callbacks.create_indexes([
        IndexModel([("received_at", ASCENDING), ("_id", ASCENDING)], name="newest"),
        partial([("msisdn", 1), ("received_at", 1), ("_id", 1)], "by_msisdn", {"msisdn": {"$type": "string"}}),
        partial([("processed", 1)], "unprocessed", {"processed": False}),
    ])
    transactions = [
        partial([("receipt", 1)], "receipts_mpesa_stk_push",
                {"provider": "mpesa", "flow": "stk_push", "receipt": {"$type": "string"}}),
        partial([("conflict", 1)], "conflicted", {"conflict": True}),
        partial([("query_due", 1)], "query_due", {"query_due": {"$type": "date"}}),
        IndexModel([("first_callback_at", 1), ("_id", 1)], name="newest"),
        partial([("msisdn", 1), ("first_callback_at", 1), ("_id", 1)], "by_msisdn",
                {"msisdn": {"$type": "string"}}),
    ]
    if outbox(variant):
        transactions.append(partial([("outbox_since", 1)], "outbox", {"outbox_since": {"$type": "date"}}))
    db.transactions.create_indexes(transactions)
    db.events.create_indexes([
        partial([("due_at", 1)], "due", {"due_at": {"$type": "date"}}),
        IndexModel([("created_at", 1), ("_id", 1)], name="newest"),
        partial([("expire_at", 1)], "expire", {"expire_at": {"$type": "date"}}, expireAfterSeconds=0),
    ])
    db.create_collection("event_batches")
    db.history.create_indexes([
        partial([("expire_at", 1)], "expire", {"expire_at": {"$type": "date"}}, expireAfterSeconds=0),
    ])
    db.endpoints.insert_one({"_id": ENDPOINT, "url": "https://merchant.example/hooks", "enabled": True,
                             "event_types": [], "providers": [], "secrets": [{"secret": "x" * 44}]})


def outbox(variant):
    return variant[0] in "BC"


def endpoint_on(variant):
    return not variant.startswith("0")


# ---------------------------------------------------------------------------------------------------
# One variant's work per batch.

class Counter:
    def __init__(self):
        self.commands = 0
        self.statements = 0
        self.document_bytes = 0

    def inserted(self, documents):
        self.commands += 1
        self.statements += len(documents)
        self.document_bytes += sum(len(bson.encode(document)) for document in documents)


class Model:
    """The service's writes and reads for one variant, batch after batch, in one database."""

    def __init__(self, db, variant, args, pid):
        self.db = db
        self.pid = pid
        self.phases = {}
        self.last = cpu_seconds(pid)
        self.variant = variant
        self.args = args
        self.rng = random.Random(27)
        self.serial = 0
        self.run = ObjectId().__str__()[-8:]
        self.previous_pending = []  # MTN PENDING callbacks of the previous batch (updates variants)
        self.expiries = []  # per batch: the `expire_at` bound of its delivered events (A, C1)
        self.histories = []  # per round: its history document's `_id` (C2)
        self.count = Counter()
        self.pool = ThreadPoolExecutor(16)

    def mark(self, phase):
        """Charges mongod's CPU since the last mark to `phase` (coarse: 10 ms ticks, summed over a run)."""
        now = cpu_seconds(self.pid)
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def callbacks(self):
        """A batch: in the updates variants, a share updates the previous batch's PENDING transactions."""
        batch = []
        updates = []
        if self.variant.endswith("U"):
            share = int(self.args.batch * self.args.update_share)
            updates = [Callback(c.serial, self.run, "mtn", "successful", key=c.key)
                       for c in self.previous_pending[:share]]
        fresh = self.args.batch - len(updates)
        pending = []
        for _ in range(fresh):
            self.serial += 1
            if self.variant.endswith("U") and len(pending) < int(self.args.batch * self.args.update_share):
                callback = Callback(self.serial, self.run, "mtn", "pending")
                pending.append(callback)
            else:
                callback = Callback(self.serial, self.run, ("mpesa", "mtn", "airtel")[self.serial % 3])
            batch.append(callback)
        self.previous_pending = pending
        return batch, updates

    def one_batch(self):
        db, variant, count = self.db, self.variant, self.count
        batch, updates = self.callbacks()
        self.mark("between batches")
        now = utcnow()
        # The fold reads the routes first, in every variant.
        list(db.endpoints.find({"enabled": {"$ne": False}}, {"event_types": 1, "providers": 1}))
        count.commands += 1
        transactions = [callback.transaction() for callback in batch]
        events = []  # (transaction as written, version) of every event of the batch
        if endpoint_on(variant):
            events = [(transaction, 1) for transaction in transactions]
        if outbox(variant):
            for transaction in transactions:
                transaction["outbox"] = [outbox_entry(transaction, 1, now)]
                transaction["outbox_since"] = now
        # The fold: every group inserted as new; the existing ones fail with a duplicate key.
        fresh = transactions + [callback.transaction() for callback in updates]
        try:
            db.transactions.insert_many(fresh, ordered=False)
        except BulkWriteError as error:
            if any(e["code"] != 11000 for e in error.details["writeErrors"]):
                raise
        count.inserted(transactions)
        count.statements += len(updates)
        if updates:
            ids = [callback.transaction_id for callback in updates]
            current = {d["_id"]: d for d in db.transactions.find({"_id": {"$in": ids}}, {"conflicts": 0})}
            count.commands += 1

            def update_one(callback):
                before = current[callback.transaction_id]
                version = before["version"] + 1
                at = callback.received_at
                after = dict(before, status="successful", receipt=callback.receipt, settled_by="callback",
                             last_callback_at=at, version=version, event_version=version,
                             event_type="transaction.successful")
                update = {
                    "$set": {"status": "successful", "reason": None, "amount": Decimal128("1000.00"),
                             "currency": callback.currency, "msisdn": callback.msisdn,
                             "receipt": callback.receipt, "settled_by": "callback", "verified": False,
                             "version": version, "updated_at": utcnow(), "event_version": version,
                             "event_type": "transaction.successful"},
                    "$max": {"last_callback_at": at},
                    "$inc": {"conflict_count": 0},
                    "$push": {"callback_ids": {"$each": [callback.document_id]},
                              "conflicts": {"$each": [], "$slice": 50}},
                    "$unset": {"query_due": ""},
                    "$min": {"first_callback_at": at},
                }
                if outbox(variant):
                    entry = outbox_entry(after, version, now)
                    update["$push"]["outbox"] = entry
                    update["$min"]["outbox_since"] = now
                result = db.transactions.update_one({"_id": callback.transaction_id,
                                                     "version": before["version"]}, update)
                assert result.matched_count == 1
                return after, version

            # Concurrently, as the service does (CONCURRENT_UPDATES = 16): commits share journal flushes.
            for after, version in self.pool.map(update_one, updates):
                count.commands += 1
                if endpoint_on(variant):
                    events.append((after, version))
        self.mark("transactions (fold)")
        # Today's events: one `event_batches` document before the callbacks' documents.
        if variant in ("A", "AU"):
            documents = [event_document(transaction, version, now) for transaction, version in events]
            db.event_batches.insert_one({"_id": ObjectId(), "created_at": now, "events": documents})
            count.inserted([{"events": documents}])
            self.mark("event_batches insert")
        callbacks = [callback.document() for callback in batch + updates]
        db.callbacks.insert_many(callbacks, ordered=False)
        count.inserted(callbacks)
        self.mark("callbacks insert")
        if endpoint_on(variant):
            self.send(now)

    def send(self, now):
        db, variant, count = self.db, self.variant, self.count
        sent = utcnow()
        if variant in ("A", "AU"):
            batch = db.event_batches.find_one({"_id": {"$nin": []}}, sort=[("_id", 1)])
            ids = [event["_id"] for event in batch["events"]]
            list(db.events.find({"_id": {"$in": ids}}, {"_id": 1}))
            count.commands += 2
            earlier = [event_id(event["transaction_id"], v)
                       for event in batch["events"] for v in range(1, event["version"])]
            if earlier:
                list(db.events.find({"_id": {"$in": earlier}, "due_at": {"$type": "date"}},
                                    {"transaction_id": 1, "version": 1, "targets": 1}))
                count.commands += 1
            self.mark("sender reads")
            documents = [delivered(event, sent) for event in batch["events"]]
            db.events.insert_many(documents, ordered=False)
            count.inserted(documents)
            self.mark("events insert (delivered)")
            db.event_batches.delete_one({"_id": batch["_id"]})
            count.commands += 1
            count.statements += 1
            self.mark("event_batches delete")
            self.expiries.append(sent + RETENTION)
            self.expire()
            return
        # B, Bg, C1, C2, BU: the sender reads the outbox's oldest transactions on the partial index.
        found = list(db.transactions.find(
            {"outbox_since": {"$lte": sent, "$type": "date"}},
            {"outbox": 1, "event_version": 1, "provider": 1, "flow": 1, "transaction_key": 1},
        ).sort("outbox_since", 1).limit(self.args.batch).hint("outbox"))
        count.commands += 1
        assert len(found) == self.args.batch, len(found)
        self.mark("sender reads")
        if variant == "Bg":
            requests = [UpdateOne({"_id": t["_id"], "event_version": t["event_version"]},
                                  {"$set": {"outbox": []}, "$unset": {"outbox_since": ""}}) for t in found]
            db.transactions.bulk_write(requests, ordered=False)
        else:
            db.transactions.update_many({"_id": {"$in": [t["_id"] for t in found]}},
                                        {"$set": {"outbox": []}, "$unset": {"outbox_since": ""}})
        count.commands += 1
        count.statements += len(found)
        self.mark("outbox clear")
        if variant == "C1":
            documents = [delivered_from_outbox(t, entry, sent) for t in found for entry in t["outbox"]]
            db.events.insert_many(documents, ordered=False)
            count.inserted(documents)
            self.mark("events insert (delivered)")
            self.expiries.append(sent + RETENTION)
            self.expire()
        elif variant == "C2":
            documents = [delivered_from_outbox(t, entry, sent) for t in found for entry in t["outbox"]]
            history = {"_id": ObjectId(), "created_at": sent, "expire_at": sent + RETENTION,
                       "events": documents}
            db.history.insert_one(history)
            count.inserted([history])
            self.mark("history insert")
            self.histories.append(history["_id"])
            if len(self.histories) > self.args.lag:
                db.history.delete_one({"_id": self.histories[-1 - self.args.lag]})
                count.commands += 1
                count.statements += 1
                self.mark("expiry")

    def expire(self):
        """The TTL monitor's work, `--lag` batches later: delete the events of one batch by `expire_at`."""
        if len(self.expiries) <= self.args.lag:
            return
        low = self.expiries[-2 - self.args.lag] if len(self.expiries) > self.args.lag + 1 else None
        high = self.expiries[-1 - self.args.lag]
        bounds = {"$lte": high} if low is None else {"$gt": low, "$lte": high}
        result = self.db.events.delete_many({"expire_at": bounds})
        self.count.commands += 1
        self.count.statements += result.deleted_count
        self.mark("expiry")


# ---------------------------------------------------------------------------------------------------
# Measuring.

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wired_tiger(client):
    status = client.admin.command("serverStatus")
    tiger = status["wiredTiger"]
    return tiger["block-manager"]["bytes written"], tiger["log"]["log bytes written"], status["opcounters"]


def last_oplog_ts(client):
    entry = client.local["oplog.rs"].find_one({}, sort=[("$natural", -1)])
    return entry["ts"]


def oplog_bytes(client, since):
    result = list(client.local["oplog.rs"].aggregate([
        {"$match": {"ts": {"$gt": since}, "ns": {"$regex": f"^{DATABASE}\\."}}},
        {"$group": {"_id": None, "bytes": {"$sum": {"$bsonSize": "$$ROOT"}}, "entries": {"$sum": 1}}},
    ]))
    return (result[0]["bytes"], result[0]["entries"]) if result else (0, 0)


def one_run(client, pid, variant, args):
    client.drop_database(DATABASE)
    db = client.get_database(DATABASE, write_concern=WriteConcern(w="majority", j=True))
    create_indexes(db, variant)
    model = Model(db, variant, args, pid)
    for _ in range(args.warmup):
        model.one_batch()
    client.admin.command("fsync")
    model.count = Counter()
    model.phases = {}
    since = last_oplog_ts(client)
    blocks0, log0, ops0 = wired_tiger(client)
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    for _ in range(args.batches):
        model.one_batch()
    model.mark("between batches")
    client.admin.command("fsync")
    model.mark("closing checkpoint")
    cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    blocks1, log1, ops1 = wired_tiger(client)
    oplog, entries = oplog_bytes(client, since)
    n = args.batches * args.batch
    return {
        "variant": variant,
        "callbacks": n,
        "cpu_us": (cpu1 - cpu0) / n * 1e6,
        "wall_us": (wall1 - wall0) / n * 1e6,
        "oplog_bytes": oplog / n,
        "oplog_entries": entries / n,
        "block_bytes": (blocks1 - blocks0) / n,
        "journal_bytes": (log1 - log0) / n,
        "document_bytes": model.count.document_bytes / n,
        "commands": model.count.commands / n,
        "statements": model.count.statements / n,
        "phases_us": {phase: cpu / n * 1e6 for phase, cpu in model.phases.items()},
        "server_ops": {key: (ops1[key] - ops0[key]) / n for key in ops0},
    }


def idle_cpu_us_per_s(pid, seconds=5.0):
    cpu0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / seconds * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=27090)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", type=int, default=30, help="measured batches per run")
    parser.add_argument("--warmup", type=int, default=4, help="batches before measuring (>= --lag)")
    parser.add_argument("--lag", type=int, default=4, help="batches between delivery and expiry")
    parser.add_argument("--update-share", type=float, default=0.3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", default="/tmp/bench_delivery_designs.json")
    args = parser.parse_args()
    client = MongoClient(f"mongodb://127.0.0.1:{args.port}/?replicaSet=rs0&retryWrites=false",
                         serverSelectionTimeoutMS=20000)
    status = client.admin.command("serverStatus")
    pid = status["pid"]
    print(f"mongod {status['version']} pid {pid}, {os.cpu_count()} cores, idle mongod "
          f"{idle_cpu_us_per_s(pid):.0f} µs CPU/s", flush=True)
    variants = args.variants.split(",")
    samples = []
    for run in range(args.runs):
        for variant in variants:
            sample = one_run(client, pid, variant, args)
            sample["run"] = run
            samples.append(sample)
            print(f"run {run} {variant:3} cpu {sample['cpu_us']:6.1f} µs  oplog {sample['oplog_bytes']:6.0f} B "
                  f"blocks {sample['block_bytes']:6.0f} B  journal {sample['journal_bytes']:6.0f} B  "
                  f"docs {sample['document_bytes']:6.0f} B  cmds {sample['commands']:.4f}  "
                  f"stmts {sample['statements']:.2f}  wall {sample['wall_us']:6.0f} µs", flush=True)
            with open(args.json, "w") as out:
                json.dump(samples, out, indent=1, default=str)
    client.drop_database(DATABASE)

    def column(variant, field):
        return [s[field] for s in samples if s["variant"] == variant]

    floor = statistics.median(column("0", "cpu_us")) if "0" in variants else None
    print()
    print("variant  cpu µs median (min-max)   ×0    oplog B  blocks B  journal B  docs B  cmds  stmts")
    for variant in variants:
        cpu = column(variant, "cpu_us")
        base = floor if not variant.endswith("U") or "0U" not in variants else statistics.median(column("0U", "cpu_us"))
        ratio = statistics.median(cpu) / base if base else float("nan")
        print(f"{variant:7}  {statistics.median(cpu):6.1f} ({min(cpu):6.1f}-{max(cpu):6.1f})  {ratio:5.2f}  "
              f"{statistics.median(column(variant, 'oplog_bytes')):7.0f}  "
              f"{statistics.median(column(variant, 'block_bytes')):8.0f}  "
              f"{statistics.median(column(variant, 'journal_bytes')):8.0f}  "
              f"{statistics.median(column(variant, 'document_bytes')):6.0f}  "
              f"{statistics.median(column(variant, 'commands')):.4f}  "
              f"{statistics.median(column(variant, 'statements')):.2f}")
    print()
    print("where mongod's CPU went, µs per callback (median of runs):")
    for variant in variants:
        runs = [s["phases_us"] for s in samples if s["variant"] == variant]
        phases = sorted({phase for run in runs for phase in run})
        print(f"{variant:7}  " + ", ".join(
            f"{phase} {statistics.median([run.get(phase, 0.0) for run in runs]):.0f}" for phase in phases))


if __name__ == "__main__":
    sys.exit(main())
