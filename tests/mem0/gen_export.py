"""Writes a synthetic Mem0 export (the pages `get_all` returns) of N memories
about children, for import benchmarks: deterministic, varied text in English
and Vietnamese, several users, metadata and categories as Mem0 writes them.
Usage: python3 gen_export.py N USERS > export.json"""

import json
import random
import sys
import uuid

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
users = int(sys.argv[2]) if len(sys.argv) > 2 else 100
rng = random.Random(13)
things_en = ["cats", "dinosaurs", "football", "pancakes", "the moon", "trains", "drawing", "rain", "swimming",
             "piano", "robots", "strawberries", "puzzles", "the zoo", "rockets", "bicycles", "snow", "ice cream"]
things_vi = ["mèo", "khủng long", "bóng đá", "bánh xèo", "mặt trăng", "tàu hỏa", "vẽ tranh", "mưa", "bơi",
             "đàn piano", "rô-bốt", "dâu tây", "ghép hình", "sở thú", "tên lửa", "xe đạp", "tuyết", "kem"]
people = ["Mom", "Dad", "Grandma", "my sister Lan", "my friend Minh", "teacher Hoa", "my cousin Bao"]
templates_en = [
    ("Likes {t}", "user_preferences"), ("Is afraid of {t}", "personal_details"),
    ("Went to see {t} with {p}", "milestones"), ("Practises {t} every Sunday", "hobbies"),
    ("Learned a new word about {t} today", "professional_details"), ("Feels happy when talking about {t}", "misc"),
]
templates_vi = [
    ("Thích {t}", "user_preferences"), ("Sợ {t}", "personal_details"),
    ("Đi xem {t} cùng {p}", "milestones"), ("Tập {t} mỗi chủ nhật", "hobbies"),
]
results = []
for i in range(n):
    if rng.random() < 0.3:
        tpl, cat = rng.choice(templates_vi)
        text = tpl.format(t=rng.choice(things_vi), p=rng.choice(people))
    else:
        tpl, cat = rng.choice(templates_en)
        text = tpl.format(t=rng.choice(things_en), p=rng.choice(people))
    day = 1 + i % 28
    results.append({
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "memory": f"{text} ({i})",
        "user_id": f"child-{i % users:04d}",
        "agent_id": "pika-robot" if i % 5 == 0 else None,
        "run_id": None,
        "app_id": None,
        "metadata": {"source": "mem0-export", "session": i // 10},
        "categories": [cat],
        "immutable": False,
        "expiration_date": None,
        "created_at": f"2025-06-{day:02d}T09:30:00.000000-07:00",
        "updated_at": f"2025-06-{day:02d}T09:30:00.000000-07:00",
    })
json.dump({"count": n, "next": None, "previous": None, "results": results}, sys.stdout, ensure_ascii=False)
