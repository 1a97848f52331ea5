"""Mem0's older Python clients (mem0ai 1.x and 0.1.x) against PIKA: add
(sync and async), search, get_all (with paging on 1.x), get, history,
delete, delete_all and the errors, asserting on results. Run with PIKA_URL
and PIKA_KEY set; exits non-zero on the first failed check."""

import os
import sys
import uuid
from importlib.metadata import version

from mem0 import MemoryClient
from mem0.exceptions import MemoryNotFoundError

url, key = os.environ["PIKA_URL"], os.environ["PIKA_KEY"]
release = version("mem0ai")
user = "mem0v1-" + uuid.uuid4().hex[:10]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED ({release}): {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def rows(answer):
    """1.x wraps lists in {"results": ...}; 0.1.x returns them bare."""
    return answer["results"] if isinstance(answer, dict) else answer


client = MemoryClient(api_key=key, host=url)

added = client.add(
    [
        {"role": "user", "content": "I have a cat named Miu and I love playing football"},
        {"role": "assistant", "content": "That sounds fun!"},
    ],
    user_id=user,
    async_mode=False,
)
results = rows(added)
check(results and all(r["id"] and r["memory"] and r["event"] in ("ADD", "UPDATE") for r in results), f"sync add: {added}")
check(any("Miu" in r["memory"] or "cat" in r["memory"].lower() for r in results), f"the cat is remembered: {added}")

pending = client.add([{"role": "user", "content": "Mình thích ăn phở lắm"}], user_id=user, async_mode=True)
check(pending.get("status") == "PENDING" and pending.get("event_id"), f"async add: {pending}")

found = rows(client.search("pets", user_id=user, top_k=5))
check(found and any("Miu" in r["memory"] for r in found), f"search finds the cat: {found}")
check(all(r["user_id"] == user and 0 <= r["score"] <= 1 for r in found), f"search rows: {found}")

everything = rows(client.get_all(user_id=user))
check(len(everything) >= len(results), f"get_all: {everything}")
if release.startswith("1."):
    page = client.get_all(user_id=user, page=1, page_size=1)
    check(page["count"] >= 1 and len(page["results"]) == 1, f"get_all paged: {page}")

first = results[0]["id"]
one = client.get(first)
check(one["id"] == first and one["user_id"] == user, f"get: {one}")
hist = client.history(first)
check(hist and hist[0]["memory_id"] == first and hist[0]["event"] == "ADD", f"history: {hist}")

client.delete(first)
try:
    client.get(first)
    check(False, "a deleted memory is still returned")
except MemoryNotFoundError:
    checks += 1

try:
    MemoryClient(api_key="pika_live_sk_notarealkey000000000000000", host=url)
    check(False, "an invalid key was accepted")
except Exception as e:
    check("API key" in str(e), f"the detail reaches the client: {e}")

# update in place, and its history
second = results[-1]["id"] if len(results) > 1 else rows(client.add([{"role": "user", "content": "I like kites"}], user_id=user, async_mode=False))[0]["id"]
if second == first:
    second = rows(client.add([{"role": "user", "content": "I like kites"}], user_id=user, async_mode=False))[0]["id"]
client.update(second, text="I like flying red kites", metadata={"source": "robot"})
now = client.get(second)
check(now["memory"] == "I like flying red kites" and now["metadata"] == {"source": "robot"}, f"update: {now}")
check(client.history(second)[-1]["event"] == "UPDATE", "history records the update")

# agent ids are kept and filtered by
scoped = rows(client.add([{"role": "user", "content": "I keep my robot toy under the bed"}], user_id=user,
                         agent_id="pika-robot", async_mode=False))
check(scoped and all(client.get(r["id"])["agent_id"] == "pika-robot" for r in scoped), f"agent kept: {scoped}")
in_agent = rows(client.search("robot toy", user_id=user, agent_id="pika-robot"))
check(in_agent and all(r["agent_id"] == "pika-robot" for r in in_agent), f"agent search: {in_agent}")
listed = rows(client.get_all(user_id=user, agent_id="pika-robot"))
check(listed and all(r["agent_id"] == "pika-robot" for r in listed), f"agent listing: {listed}")

# batch update and delete
client.batch_update([{"memory_id": second, "text": "I like flying blue kites"}])
check(client.get(second)["memory"] == "I like flying blue kites", "batch update")
client.batch_delete([{"memory_id": second}])
try:
    client.get(second)
    check(False, "a batch-deleted memory is still returned")
except MemoryNotFoundError:
    checks += 1

# entities
mine = [e for e in client.users()["results"] if e["name"] == user]
check(len(mine) == 1 and mine[0]["type"] == "user", f"users(): {mine}")

client.delete_all(user_id=user)
check(rows(client.get_all(user_id=user)) == [], "delete_all leaves nothing")

again = "mem0v1-" + uuid.uuid4().hex[:10]
client.add([{"role": "user", "content": "I have a blue bike"}], user_id=again, async_mode=False)
client.delete_users(user_id=again)
check(rows(client.get_all(user_id=again)) == [], "delete_users erases the user")

print(f"mem0ai {release} client: {checks} checks passed")
