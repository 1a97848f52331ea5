"""Mem0's own Python client (mem0ai 2.x) against PIKA: every call asserts on
results, not only on status codes. Run by tests/mem0/run.sh with
PIKA_URL and PIKA_KEY set; exits non-zero on the first failed check."""

import os
import sys
import uuid

from mem0 import MemoryClient
from mem0.exceptions import MemoryNotFoundError, AuthenticationError

url, key = os.environ["PIKA_URL"], os.environ["PIKA_KEY"]
user = "mem0-" + uuid.uuid4().hex[:10]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


client = MemoryClient(api_key=key, host=url)  # GET /v1/ping/

# add, synchronously: the facts come back with their ids and events
added = client.add(
    [
        {"role": "user", "content": "I have a cat named Miu and I love playing football"},
        {"role": "assistant", "content": "That sounds fun!"},
    ],
    user_id=user,
    async_mode=False,
)
check(isinstance(added.get("results"), list) and added["results"], f"sync add returns results: {added}")
check(all(r["event"] in ("ADD", "UPDATE") and r["id"] and r["memory"] for r in added["results"]), f"add rows: {added}")
memories = [r["memory"] for r in added["results"]]
check(any("Miu" in m or "cat" in m.lower() for m in memories), f"the cat is remembered: {memories}")

# add, asynchronously (Mem0's default): PENDING with an event id
pending = client.add("Mình thích ăn phở lắm", user_id=user)
check(pending.get("status") == "PENDING" and pending.get("event_id"), f"async add: {pending}")

# infer=False keeps the text word for word, one memory per message
given = client.add("Hôm nay con được điểm mười môn toán", user_id=user, infer=False, async_mode=False)
check([r["memory"] for r in given["results"]] == ["Hôm nay con được điểm mười môn toán"], f"infer=False: {given}")

# search with filters
found = client.search("pets", filters={"user_id": user}, top_k=5)
results = found["results"]
check(results and any("Miu" in r["memory"] for r in results), f"search finds the cat: {found}")
check(all(r["user_id"] == user and 0 <= r["score"] <= 1 for r in results), f"search rows: {results}")
check(len(results) <= 5, "top_k bounds the results")

# get_all, paged
page = client.get_all(filters={"user_id": user}, page=1, page_size=1)
check(page["count"] >= 1 and len(page["results"]) == 1, f"get_all page: {page}")
check(page["previous"] is None, "first page has no previous")
check((page["next"] is not None) == (page["count"] > 1), f"next link: {page}")

# get one, and its history
first = added["results"][0]["id"]
one = client.get(first)
check(one["id"] == first and one["memory"] and one["user_id"] == user, f"get: {one}")
hist = client.history(first)
check(isinstance(hist, list) and hist and hist[0]["memory_id"] == first and hist[0]["event"] == "ADD", f"history: {hist}")

# delete one: then it is gone, and the client raises its own not-found error
client.delete(first)
try:
    client.get(first)
    check(False, "a deleted memory is still returned")
except MemoryNotFoundError:
    checks += 1

# an unknown key fails the constructor with the server's detail
try:
    MemoryClient(api_key="pika_live_sk_notarealkey000000000000000", host=url)
    check(False, "an invalid key was accepted")
except (ValueError, AuthenticationError) as e:
    check("API key" in str(e) and "401" not in str(e), f"the detail reaches the client: {e}")

# unsupported filters are refused by name
try:
    client.search("pets", filters={"AND": [{"user_id": user}, {"agent_id": "bot"}]})
    check(False, "an agent_id filter was accepted")
except Exception as e:  # the client's ValidationError
    check("agent_id" in str(e), f"the refused filter is named: {e}")

# delete_all: the user's memories are gone
client.delete_all(user_id=user)
after = client.get_all(filters={"user_id": user})
check(after["count"] == 0, f"delete_all leaves nothing: {after}")

print(f"mem0ai 2.x client: {checks} checks passed")
