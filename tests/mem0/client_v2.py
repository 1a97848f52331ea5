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

# update in place: same id, new text, an UPDATE in its history
second = given["results"][0]["id"]
updated = client.update(second, text="Hôm nay con được điểm chín môn toán", metadata={"source": "robot"})
check(updated["id"] == second and "chín" in updated["memory"], f"update answers the memory: {updated}")
now = client.get(second)
check(now["memory"] == "Hôm nay con được điểm chín môn toán" and now["metadata"] == {"source": "robot"}, f"get after update: {now}")
events = [h["event"] for h in client.history(second)]
check(events[-1] == "UPDATE" and "ADD" in events, f"history after update: {events}")
rows = client.history(second)
check(rows[-1]["old_memory"].endswith("mười môn toán") and "chín" in rows[-1]["new_memory"], f"history texts: {rows[-1]}")
refound = client.search("điểm chín môn toán", filters={"user_id": user})["results"]
check(refound and refound[0]["id"] == second, f"search finds the new text: {refound}")

# agent, run and app ids are kept on memories and filtered by
scoped = client.add("I keep my robot toy under the bed", user_id=user, agent_id="pika-robot", run_id="night-1",
                    infer=False, async_mode=False, metadata={"room": "bedroom"})
scoped_id = scoped["results"][0]["id"]
got = client.get(scoped_id)
check(got["agent_id"] == "pika-robot" and got["run_id"] == "night-1" and got["metadata"] == {"room": "bedroom"}, f"scope kept: {got}")
in_agent = client.search("robot toy", filters={"AND": [{"user_id": user}, {"agent_id": "pika-robot"}]})["results"]
check([r["id"] for r in in_agent] == [scoped_id], f"an agent filter finds only that agent's memories: {in_agent}")
other_agent = client.search("robot toy", filters={"AND": [{"user_id": user}, {"agent_id": "another-bot"}]})["results"]
check(other_agent == [], f"another agent sees none: {other_agent}")
listed = client.get_all(filters={"AND": [{"user_id": user}, {"run_id": "night-1"}]})
check(listed["count"] == 1 and listed["results"][0]["id"] == scoped_id, f"get_all by run: {listed}")

# batch update and batch delete
extra = client.add([{"role": "user", "content": "I like red apples"}, {"role": "user", "content": "I like green pears"}],
                   user_id=user, infer=False, async_mode=False)
ids = [r["id"] for r in extra["results"]]
check(len(ids) == 2, f"two memories as given: {extra}")
client.batch_update([{"memory_id": ids[0], "text": "I like yellow bananas"}, {"memory_id": ids[1], "text": "I like purple grapes"}])
check(client.get(ids[0])["memory"] == "I like yellow bananas" and client.get(ids[1])["memory"] == "I like purple grapes", "batch update")
client.batch_delete([{"memory_id": i} for i in ids])
for i in ids:
    try:
        client.get(i)
        check(False, "a batch-deleted memory is still returned")
    except MemoryNotFoundError:
        checks += 1

# feedback on a memory is accepted
fb = client.feedback(scoped_id, feedback="POSITIVE", feedback_reason="right")
check(fb.get("feedback") == "POSITIVE", f"feedback: {fb}")

# unsupported filters are refused by name
try:
    client.search("pets", filters={"OR": [{"user_id": user}, {"agent_id": "bot"}]})
    check(False, "an OR filter was accepted")
except Exception as e:  # the client's ValidationError
    check("OR" in str(e), f"the refused filter is named: {e}")

# entities: the user is listed with its memory count
users = client.users()
mine = [e for e in users["results"] if e["name"] == user]
check(len(mine) == 1 and mine[0]["type"] == "user" and mine[0]["total_memories"] >= 2, f"users(): {mine}")

# delete_all within an agent: only that agent's memories go
client.delete_all(user_id=user, agent_id="pika-robot")
left = client.get_all(filters={"user_id": user})
check(left["count"] >= 1 and all(r["agent_id"] != "pika-robot" for r in left["results"]), f"delete_all by agent: {left}")

# delete_all: the user's memories are gone
client.delete_all(user_id=user)
after = client.get_all(filters={"user_id": user})
check(after["count"] == 0, f"delete_all leaves nothing: {after}")

# delete_users(user_id=) erases a user; reset() erases every user of the tenant
again = "mem0-" + uuid.uuid4().hex[:10]
client.add("I have a blue bike", user_id=again, infer=False, async_mode=False)
client.delete_users(user_id=again)
check(client.get_all(filters={"user_id": again})["count"] == 0, "delete_users erases the user")
if os.environ.get("PIKA_MEM0_RESET") == "1":
    client.add("I have a green kite", user_id=again, infer=False, async_mode=False)
    client.reset()
    check(client.users()["results"] == [], "reset leaves no users")

print(f"mem0ai 2.x client: {checks} checks passed")
