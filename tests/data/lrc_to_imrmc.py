"""Converts RJafroc's LRC file of the Van Dyke data (``VD.lrc``) to the iMRMC input format
(``vandyke.imrmc``): ``python tests/data/lrc_to_imrmc.py``.

LRC: a header (title, first reader id, modality names, "L L"), then per reader its id, the
non-diseased cases' rows until ``*``, the diseased cases' rows until ``*``; a row is one score
per modality and the case number (0-based); ``#`` ends the file. iMRMC: truth rows
``-1,case,truth,0|1`` then ``reader,case,modality,score`` after ``BEGIN DATA:``.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    lines = (HERE / "VD.lrc").read_text().split("\n")
    reader, i = int(lines[1]), 4  # the first reader's id comes before the modality names
    rows, truth = [], {}
    while True:
        for label in (0, 1):
            while lines[i] != "*":
                *scores, case = lines[i].split("\t")
                truth[int(case) + 1] = label
                rows += [(reader, int(case) + 1, m, float(s)) for m, s in enumerate(scores)]
                i += 1
            i += 1
        if lines[i] == "#":
            break
        reader, i = int(lines[i]), i + 1
    out = ["Van Dyke data (Van Dyke et al., Radiology 1993); from RJafroc inst/extdata/datasets/VD.lrc",
           f"N0:{sum(v == 0 for v in truth.values())}", f"N1:{sum(truth.values())}",
           f"NR:{len({r[0] for r in rows})}", f"NM:{len({r[2] for r in rows})}", "BEGIN DATA:"]
    out += [f"-1,{case},truth,{truth[case]}" for case in sorted(truth)]
    out += [f"{r},{c},{m},{s:.6f}" for r, c, m, s in sorted(rows, key=lambda r: (r[2], r[0], r[1]))]
    (HERE / "vandyke.imrmc").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
