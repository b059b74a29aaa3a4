#!/usr/bin/env bash
# NeoPolyp: 100 copy-paste images per class into training frames, then an nnU-Net export
# with its data card (docs/neopolyp_export_DATACARD.md), its size and time, and nnU-Net's own
# integrity check. Research-use data: the export stays under build/, never committed.
set -euo pipefail
W=${W:-build/np-windows/workspace}
[ -d "$W/datasets/neopolyp" ] || .venv/bin/python -m polyp_core --workspace "$W" import \
    ../shared/data/neopolyp --name neopolyp
DB=sqlite:///$(pwd)/build/np-export/studio.db
for c in AD REST; do
  .venv/bin/python -m polyp_core --workspace $W copy-paste neopolyp --class $c --n 100 \
      --seed $([ $c = AD ] && echo 0 || echo 1000) --generator np-export-copy-paste --db $DB
done
rm -rf ${OUT:-build/np-export/out}
/usr/bin/time -v .venv/bin/python -m polyp_core --workspace $W export neopolyp ${OUT:-build/np-export/out} \
    --to nnunet --generators np-export-copy-paste --number 502 --name NeoPolypCopyPaste \
    --licence "NeoPolyp (BKAI-IGH): research use only; see its README" --db $DB 2> build/np-export/time.txt
du -sh ${OUT:-build/np-export/out}
.venv/bin/python -c "
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
verify_dataset_integrity('${OUT:-build/np-export/out}/Dataset502_NeoPolypCopyPaste', 2)" 2>&1 | grep -v 'not defined' | tail -3
