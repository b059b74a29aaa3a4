"""A reviewer in another process, for the load and kill tests.

    python review_worker.py DB_URL STUDY NAME PASSWORD MODE

MODE ``all``: rate every assignment twice (a double submission) and print ``DONE n``.
MODE ``forever``: keep rating and revising, printing ``ACK token verdict`` after each
acknowledged rating, until killed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polyp_core.review import desk
from polyp_core.review.accounts import sign_in
from review_db import Database


def main() -> None:
    url, study, name, password, mode = sys.argv[1:6]
    db = Database(url, upgrade=False)
    person = sign_in(db, name, password)
    items = desk.queue(db, person, study)
    if mode == "all":
        for item in items:
            for _ in range(2):
                desk.rate(db, person, item.token, "synthetic", "moderate", seconds=1.0)
        print(f"DONE {len(items)}", flush=True)
        return
    round_ = 0
    while True:
        verdict = ("real", "synthetic")[round_ % 2]
        for item in items:
            desk.rate(db, person, item.token, verdict, "good", seconds=float(round_))
            print(f"ACK {item.token} {verdict}", flush=True)
        round_ += 1


if __name__ == "__main__":
    main()
