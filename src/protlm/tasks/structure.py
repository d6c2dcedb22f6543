"""Secondary structure: per-residue 3- and 8-state labels.

Sources:
- TAPE / NetSurfP split directories (`secondary_structure_{train,valid,cb513,ts115,casp12}.json|lmdb`)
  with `primary`, `ss3`, `ss8` (class indices) and `valid_mask` (residues without coordinates are
  unscored). The index order is NetSurfP-2.0's: ss3 = H, E, C and ss8 = G, H, I, B, E, S, T, C
  (Q3 and Q8 do not depend on the names).
- A DSSP table (`pdb_id, chain, sequence, dssp8[, cluster25]`, one DSSP letter per residue) such as
  `secondary_structure.tsv.gz`; 8 states reduce to 3 as H,G,I -> H; E,B -> E; the rest -> C.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, iter_table_rows
from protlm.tasks.data import IGNORE, Example
from protlm.tasks.readers import Collector

SS8_LABELS = ("G", "H", "I", "B", "E", "S", "T", "C")
SS3_LABELS = ("H", "E", "C")
# DSSP letter -> 8-state index; '-' and ' ' (no DSSP state) are coil, as in NetSurfP.
_DSSP8 = {**{c: i for i, c in enumerate(SS8_LABELS)}, "-": 7, " ": 7, "L": 7, "P": 7}
SS8_TO_SS3 = np.array([0, 0, 0, 1, 1, 2, 2, 2], dtype=np.int8)  # G,H,I -> H; B,E -> E; S,T,C -> C


def states_for(n_states: int) -> tuple[str, ...]:
    return SS3_LABELS if n_states == 3 else SS8_LABELS


def tape_ss_label(n_states: int) -> Callable[[dict, Path, str], np.ndarray]:
    """Label maker for TAPE/NetSurfP records: (n_residues,) int8 with IGNORE where valid_mask is 0."""
    field = f"ss{n_states}"

    def make(item: dict, path: Path, rid: str) -> np.ndarray:
        if field not in item:
            raise InputError(path, f"record lacks the field {field!r}", record=rid)
        states = np.asarray(item[field]).reshape(-1).astype(np.int64)
        n = len(str(item["primary"]))
        if len(states) != n:
            raise InputError(path, f"{field} has {len(states)} states for {n} residues", record=rid)
        if len(states) and (states.min() < 0 or states.max() >= n_states):
            raise InputError(path, f"{field} values must be in 0..{n_states - 1}", record=rid)
        label = states.astype(np.int8)
        if "valid_mask" in item:
            valid = np.asarray(item["valid_mask"]).reshape(-1).astype(bool)
            if len(valid) != n:
                raise InputError(path, f"valid_mask has {len(valid)} entries for {n} residues", record=rid)
            label[~valid] = IGNORE
        return label

    return make


def read_dssp_table(
    path: str | Path, n_states: int, policy: ResiduePolicy = ResiduePolicy()
) -> tuple[list[Example], SkipReport]:
    """Chains of a DSSP table as residue-labelled examples, grouped by `cluster25` when present."""
    from protlm.io.tables import table_header

    col = Collector(path, policy)
    has_cluster = "cluster25" in table_header(path)
    columns = ["pdb_id", "chain", "sequence", "dssp8"] + (["cluster25"] if has_cluster else [])
    out = []
    for line, row in iter_table_rows(path, columns):
        rid = f"{row['pdb_id']}_{row['chain']}"
        seq = col.clean(row["sequence"], line, rid)
        dssp = row["dssp8"]
        if len(dssp) != len(seq):
            raise InputError(path, f"dssp8 has {len(dssp)} letters for {len(seq)} residues", line=line, record=rid)
        try:
            ss8 = np.fromiter((_DSSP8[c] for c in dssp), dtype=np.int8, count=len(dssp))
        except KeyError as e:
            raise InputError(path, f"unknown DSSP state {e.args[0]!r}", line=line, record=rid) from None
        label = ss8 if n_states == 8 else SS8_TO_SS3[ss8]
        if col.keep(rid, (seq,), line):
            out.append(Example(rid, (seq,), label, row["cluster25"] if has_cluster else row["pdb_id"]))
    return out, col.report
