"""The studio's domain vocabularies, defined once: the reviewer's answer scale, the quality
order, histology. The database (``review_db.models``) imports them for its constraints; the
engine, the CLI and the UI read them from here."""

from __future__ import annotations

#: The reviewer's answer: 1 definitely real, 2 probably real, 3 unsure, 4 probably synthetic,
#: 5 definitely synthetic. The verdict is derived from it (:func:`verdict_of`).
CONFIDENCES = (1, 2, 3, 4, 5)
CONFIDENCE_LABELS = {1: "definitely real", 2: "probably real", 3: "unsure",
                     4: "probably synthetic", 5: "definitely synthetic"}
VERDICTS = ("real", "synthetic", "unsure")


def verdict_of(confidence: int) -> str:
    """The binary verdict a point of the scale means (3: ``unsure``)."""
    return "real" if confidence <= 2 else "synthetic" if confidence >= 4 else "unsure"


#: Image quality as reviewers rate it, best first (the order of the buttons and tables).
QUALITIES = ("good", "moderate", "poor")
#: The same, worst first: a quality's rank is its index (``min_quality`` filters compare ranks).
QUALITY_ORDER = tuple(reversed(QUALITIES))
QUALITY_RANK = {quality: rank for rank, quality in enumerate(QUALITY_ORDER)}

#: Histology a reviewer may guess (the three-class scheme's classes, or unsure).
HISTOLOGY_GUESSES = ("AD", "SSA", "HP", "unsure")
