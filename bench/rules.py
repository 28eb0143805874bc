"""Rule evaluation cost: 10,000 messages classified by a 200-rule set.

Baseline in the same run: parsing the same messages (the step before classification).
Patterns are compiled once at load time; this measures evaluation only.

    .venv/bin/python bench/rules.py [--messages 10000] [--rules 200]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import WORDS, make_messages

from mailflow.classify import Facts, load_rules
from mailflow.parse import parse


def write_rules(folder: Path, n: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    (folder / "lists").mkdir(parents=True)
    (folder / "lists" / "vip.yaml").write_text(
        "".join(f"- user{i}@customer{i % 50}.example\n" for i in range(0, 2000, 7)))
    (folder / "groups.yaml").write_text("groups:\n  tier2: {}\n  management: {}\n")
    lines = ["rules:"]
    for i in range(n):
        kind = i % 5
        if kind == 0:
            cond = f"{{subject: {{words: [{rng.choice(WORDS)}, {rng.choice(WORDS)}x]}}}}"
        elif kind == 1:
            cond = (f"{{body: {{regex: '{rng.choice(WORDS)} (is|was) "
                    f"{rng.choice(WORDS)}'}}}}")
        elif kind == 2:
            cond = f"{{sender: {{domain: customer{rng.randrange(50)}.example}}}}"
        elif kind == 3:
            cond = (f"{{all: [{{sender: {{list: vip}}}}, {{body: {{contains: "
                    f"'{rng.choice(WORDS)} {rng.choice(WORDS)}'}}}}]}}")
        else:
            cond = f"{{any: [{{subject: '{rng.choice(WORDS)}'}}, {{business_hours: false}}]}}"
        sets = rng.choice(["{severity: 2}", "{owner: tier2}", f"{{tags: [t{i}]}}",
                           "{category: administrative, owner: management}"])
        lines.append(f"  - name: r{i}\n    when: {cond}\n    set: {sets}")
    (folder / "classify.yaml").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--rules", type=int, default=200)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp()) / "rules"
    write_rules(folder, args.rules)
    t0 = time.perf_counter()
    rs = load_rules(folder)
    load_s = time.perf_counter() - t0
    raws = make_messages(args.messages)
    t0 = time.perf_counter()
    msgs = [parse(r) for r in raws]
    parse_s = time.perf_counter() - t0
    when = datetime(2026, 1, 5, 10, tzinfo=UTC)
    t0 = time.perf_counter()
    matched = 0
    for m in msgs:
        matched += len(rs.evaluate(Facts.of(m, when)).matched)
    eval_s = time.perf_counter() - t0
    n = len(msgs)
    print(f"loaded {len(rs.rules)} rules in {load_s * 1000:.0f} ms")
    print(f"baseline parse: {n / parse_s:.0f} msg/s ({parse_s / n * 1e6:.0f} us/msg)")
    print(f"classify with {len(rs.rules)} rules: {n / eval_s:.0f} msg/s "
          f"({eval_s / n * 1e6:.0f} us/msg, {matched / n:.1f} rules matched per message)")


if __name__ == "__main__":
    main()
