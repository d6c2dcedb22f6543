"""The task table: one plain `TaskSpec` per downstream task, no registry.

Each spec names its head kind, metrics, the paper's default hyperparameters (LR 1e-5...5e-5,
batch 8-32, 2-15 epochs) and a loader that turns `--data` (or the built-in data) into `TaskData`.
Splits follow the source; where the source has none, group-disjoint splits (homology cluster,
protein, epitope) are drawn with the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protlm.errors import InputError, ProtlmError
from protlm.io import ResiduePolicy
from protlm.tasks.data import Example, TaskData, group_split
from protlm.tasks.kinds import Kind, MultiLabel, Pair, Regression, Residue
from protlm.tasks.readers import (
    BINARY_LABELS,
    Collector,
    class_field,
    label_sets,
    number_field,
    parse_number,
    read_deeploc_fasta,
    read_deepsol,
    read_labelled_fasta,
    read_split_dir,
    read_target_table,
    split_files,
)
from protlm.tasks.structure import read_dssp_table, states_for, tape_ss_label
from protlm.tasks.tcr import make_tcr_splits, read_background, read_tcr_positives, read_titan

TAPE_FOLDS = 1195
SCORE = ("score",)  # the one output of a regression task


@dataclass(frozen=True)
class DataRequest:
    """What a loader needs: the user's `--data` (None = built-in), seed for made splits, policy."""

    data: str | None = None
    seed: int = 0
    policy: ResiduePolicy = ResiduePolicy()
    background: str | None = None  # TCR: background CDR3 beta list for negatives
    sequences: str | None = None  # assembly tables with a `members` column: the members' sequences


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: Kind  # what it predicts (tasks/kinds.py): classes of one protein, of 2+ proteins, per residue, a number...
    description: str
    formats: str  # what --data accepts (help text)
    metrics: tuple[str, ...]
    primary: str  # the metric summarised over seeds and printed first
    load: Callable[[DataRequest], TaskData]
    lr: float = 2e-5
    batch_size: int = 16
    epochs: float = 5.0
    symmetric: bool = False  # pair order carries no meaning (PPI): the baseline uses symmetric features


def _require(req: DataRequest, task: str) -> Path:
    if req.data is None:
        raise ProtlmError(f"task {task} has no built-in data here: give --data (see `protlm finetune --help`)")
    path = Path(req.data)
    if not path.exists():
        raise InputError(path, "file not found")
    return path


def _with_dev(splits: dict[str, list[Example]], seed: int) -> dict[str, list[Example]]:
    """Carve a group-disjoint dev set (10%) out of train when the source has none."""
    if "dev" in splits:
        return splits
    parts = group_split(splits["train"], seed, dev=0.1, test=0.0)
    return {"train": parts["train"], "dev": parts["dev"], **{k: v for k, v in splits.items() if k != "train"}}


def _with_test(examples: list[Example], seed: int) -> dict[str, list[Example]]:
    return group_split(examples, seed, dev=0.1, test=0.1)


def load_localization(req: DataRequest) -> TaskData:
    if req.data is None:
        from protlm.corpora import load_scl2205

        scl = load_scl2205()
        col = Collector("scl2205 (scldata/data/scl2205.csv)", req.policy)
        splits: dict[str, list[Example]] = {}
        for ours, theirs in (("train", "train"), ("dev", "eval"), ("test", "heldout")):
            splits[ours] = []
            for e in scl.split(theirs):
                seq = col.clean(e.seq, e.index + 2, e.id)
                if col.keep(e.id, (seq,), e.index + 2):
                    splits[ours].append(Example(e.id, (seq,), e.label, e.id))
        note = {"splits": "SCL2205 official homology-reduced train / eval (dev) / heldout (test)"}
        return TaskData(scl.label_names, splits, "scl2205", [col.report], note)
    path = _require(req, "localization")
    if path.is_dir():
        labels = tuple(str(i) for i in range(10))
        splits, reports = read_split_dir(path, class_field("localization", labels), req.policy)
        return TaskData(labels, _with_dev(splits, req.seed), str(path), reports)
    from protlm.tasks.readers import DEEPLOC_LABELS

    splits, report = read_deeploc_fasta(path, req.policy)
    return TaskData(DEEPLOC_LABELS, _with_dev(splits, req.seed), str(path), [report])


def load_solubility(req: DataRequest) -> TaskData:
    path = _require(req, "solubility")
    if path.is_dir() and (path / "train_src").is_file():
        splits, reports = read_deepsol(path, req.policy)
    elif path.is_dir():
        splits, reports = read_split_dir(path, class_field("solubility", BINARY_LABELS), req.policy)
    else:
        examples, report = read_labelled_fasta(path, BINARY_LABELS, req.policy)
        splits, reports = _with_test(examples, req.seed), [report]
    return TaskData(BINARY_LABELS, _with_dev(splits, req.seed), str(path), reports)


def load_remote_homology(req: DataRequest) -> TaskData:
    path = _require(req, "remote-homology")
    if not path.is_dir():
        raise InputError(path, "remote-homology reads a TAPE directory of remote_homology_*.json|lmdb files")
    labels = tuple(str(i) for i in range(TAPE_FOLDS))
    splits, reports = read_split_dir(path, class_field("fold_label", labels), req.policy, group_field="family_label")
    return TaskData(labels, _with_dev(splits, req.seed), str(path), reports)


def load_family(req: DataRequest) -> TaskData:
    """Pfam family of a protein from a table `accession, pfam_acc, sequence[, cluster30]`."""
    from protlm.io import iter_table_rows
    from protlm.tasks.readers import read_table

    path = _require(req, "family")
    from protlm.io.tables import table_header

    header = table_header(path)
    for c in ("accession", "pfam_acc", "sequence"):
        if c not in header:
            raise InputError(path, f"missing column {c}; the file has: {', '.join(header)}", line=1)
    labels = tuple(sorted({row["pfam_acc"] for _, row in iter_table_rows(path, ["pfam_acc"])}))
    group = "cluster30" if "cluster30" in header else None
    examples, report = read_table(path, "sequence", "pfam_acc", labels, "accession", group, req.policy)
    note = {"splits": f"group-disjoint 80/10/10 by {group or 'accession'} with seed {req.seed}"}
    return TaskData(labels, _with_test(examples, req.seed), str(path), [report], note)


def load_ppi(req: DataRequest) -> TaskData:
    from protlm.io import SkipReport
    from protlm.pairs import builtin_pairs, read_pairs
    from protlm.pairs.lmdb_ppi import read_ppi_lmdb

    path = builtin_pairs() if req.data is None else _require(req, "ppi")
    splits: dict[str, list[Example]] = {}
    reports = []
    if path.is_dir() and not list(path.glob("pairs*.parquet")):
        for split, file in split_files(path).items():
            report = SkipReport(str(file))
            for p in read_ppi_lmdb(file, split, req.policy, report):
                splits.setdefault(split, []).append(Example(f"{p.id_a}|{p.id_b}", (p.seq_a, p.seq_b), p.label, ""))
            reports.append(report)
        note = {"splits": "as shipped (PEER LMDB files)"}
    else:
        report = SkipReport(str(path))
        for p in read_pairs(path, req.policy, report):
            splits.setdefault(p.split, []).append(Example(f"{p.id_a}|{p.id_b}", (p.seq_a, p.seq_b), p.label, p.id_a))
        reports.append(report)
        note = {"splits": "the pair table's split column (protlm pairs: protein-disjoint when built --split strict)"}
        if set(splits) == {"train"}:
            raise InputError(path, "every pair is in split 'train': build dev/test splits with `protlm pairs build`")
    return TaskData(BINARY_LABELS, _with_dev(splits, req.seed), str(path), reports, note)


def load_tcr(req: DataRequest) -> TaskData:
    path = _require(req, "tcr")
    if path.is_dir():
        splits, reports = read_titan(path, req.policy)
        return TaskData(BINARY_LABELS, _with_dev(splits, req.seed), str(path), reports, {"splits": "TITAN files"})
    positives, report = read_tcr_positives(path, req.policy)
    reports = [report]
    background = None
    if req.background:
        background, bg_report = read_background(req.background, req.policy)
        reports.append(bg_report)
    splits = make_tcr_splits(positives, background, req.seed)
    note = {
        "splits": f"unseen-epitope test (10% of epitopes), unseen-TCR test and dev (10% of TCRs each), seed {req.seed}",
        "negatives": "1 per positive: TCR with a shuffled epitope of the same split"
        + ("; every other one a background CDR3 with the positive's epitope" if background else ""),
    }
    return TaskData(BINARY_LABELS, splits, str(path), reports, note)


def _file_splits(rows: list[tuple[str, Example]], path: Path, seed: int) -> tuple[dict[str, list[Example]], dict]:
    """Splits of a table's rows [(split or '', example)]: its split column when it has one (train, dev / valid,
    test*), else group-disjoint 80/10/10 by the group column (else id) with `seed`; and the note saying which."""
    if not any(split for split, _ in rows):
        note = {"splits": f"group-disjoint 80/10/10 by the group column (else id) with seed {seed}"}
        return _with_test([ex for _, ex in rows], seed), note
    splits: dict[str, list[Example]] = {}
    for split, ex in rows:
        name = {"valid": "dev", "validation": "dev", "": "train"}.get(split, split)
        if name not in ("train", "dev") and not name.startswith("test"):
            raise InputError(path, f"split {split!r} of {ex.id}: expected train, dev / valid or test*")
        splits.setdefault(name, []).append(ex)
    return _with_dev(splits, seed), {"splits": "the file's split column"}


def load_assembly(req: DataRequest) -> TaskData:
    """Any label of a multi-protein input (complex type, stoichiometry, binding of 3+ partners...)."""
    from protlm.tasks.readers import read_labelled_assemblies

    path = _require(req, "assembly")
    rows, labels, report = read_labelled_assemblies(path, req.sequences, req.policy)
    splits, note = _file_splits(rows, path, req.seed)
    return TaskData(labels, splits, str(path), [report], note)


def _load_score(task: str, tape_field: str) -> Callable[[DataRequest], TaskData]:
    """A regression target: a TAPE directory (`<task>_{train,valid,test}.json|lmdb`, field `tape_field`) or a
    table with `sequence` and `score` (optional `id`, `split`, `group`)."""

    def load(req: DataRequest) -> TaskData:
        path = _require(req, task)
        if path.is_dir():
            splits, reports = read_split_dir(path, number_field(tape_field), req.policy)
            return TaskData(SCORE, _with_dev(splits, req.seed), str(path), reports, {"splits": "TAPE files"})
        rows, report = read_target_table(path, "score", lambda v, line, rid: parse_number(v, path, line, rid, "score"),
                                         req.policy)  # fmt: skip
        splits, note = _file_splits(rows, path, req.seed)
        return TaskData(SCORE, splits, str(path), [report], note)

    return load


def load_multilabel(req: DataRequest) -> TaskData:
    """Label sets of proteins from a table with `sequence` and `labels` (`;`-joined; optional `id`, `split`, `group`)."""
    path = _require(req, "multilabel")
    parse = label_sets(path)
    rows, report = read_target_table(path, "labels", parse, req.policy)
    splits, note = _file_splits(rows, path, req.seed)
    return TaskData(parse.labels, splits, str(path), [report], note)


def _load_ss(n_states: int) -> Callable[[DataRequest], TaskData]:
    def load(req: DataRequest) -> TaskData:
        path = _require(req, f"ss{n_states}")
        labels = states_for(n_states)
        if path.is_dir():
            splits, reports = read_split_dir(path, tape_ss_label(n_states), req.policy)
            return TaskData(labels, _with_dev(splits, req.seed), str(path), reports, {"splits": "TAPE files"})
        examples, report = read_dssp_table(path, n_states, req.policy)
        note = {"splits": f"cluster-disjoint 80/10/10 (cluster25, else PDB entry) with seed {req.seed}"}
        return TaskData(labels, _with_test(examples, req.seed), str(path), [report], note)

    return load


_CLS = ("accuracy", "macro_f1", "mcc")
_BIN = ("accuracy", "f1", "mcc", "roc_auc", "pr_auc")
_SS = "TAPE/NetSurfP directory (secondary_structure_{train,valid,cb513,ts115,casp12}.json|lmdb) or DSSP table (pdb_id, chain, sequence, dssp8[, cluster25])"

SEQ, PAIR, RESIDUE, REGRESSION, MULTILABEL = Kind(), Pair(), Residue(), Regression(), MultiLabel()
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            "localization", SEQ, "subcellular localization (sequence -> class)",
            "default SCL2205 (13 classes); DeepLoc FASTA ('>ID Location-M [test]'); PEER LMDB directory",
            _CLS, "accuracy", load_localization, lr=5e-5, batch_size=16, epochs=5,
        ),
        TaskSpec(
            "solubility", SEQ, "protein solubility (sequence -> 0/1)",
            "DeepSol directory ({train,val,test}_src / _tgt); PEER LMDB directory; FASTA with the label last in the header",
            ("accuracy", "mcc", "roc_auc", "pr_auc", "f1"), "accuracy", load_solubility, lr=2e-5, batch_size=16, epochs=5,
        ),
        TaskSpec(
            "remote-homology", SEQ, "fold classification, TAPE (1,195 folds)",
            "TAPE directory (remote_homology_{train,valid,test_fold_holdout,...}.json|lmdb, field fold_label)",
            ("accuracy", "macro_f1"), "accuracy", load_remote_homology, lr=2e-5, batch_size=16, epochs=10,
        ),
        TaskSpec(
            "family", SEQ, "protein family classification (Pfam)",
            "table with accession, pfam_acc, sequence[, cluster30] (e.g. pfam_families.tsv.gz)",
            ("accuracy", "macro_f1"), "accuracy", load_family, lr=5e-5, batch_size=16, epochs=5,
        ),
        TaskSpec(
            "ppi", PAIR, "protein-protein binding (pair -> 0/1)",
            "default: built-in OmniPath pairs + sampled negatives, protein-disjoint; a `protlm pairs` table or "
            "directory; PEER HumanPPI/YeastPPI LMDB directory",
            _BIN, "roc_auc", load_ppi, lr=2e-5, batch_size=8, epochs=5, symmetric=True,
        ),
        TaskSpec(
            "tcr", PAIR, "TCR-epitope binding ((CDR3 beta, epitope) -> 0/1)",
            "TITAN directory (tcr.csv, epitopes.csv, pair files); VDJdb TSV or cdr3b/epitope table (+ --background)",
            ("roc_auc", "pr_auc", "accuracy", "f1", "mcc"), "roc_auc", load_tcr, lr=2e-5, batch_size=32, epochs=3,
        ),
        TaskSpec(
            "assembly", PAIR, "multi-protein classification (2+ proteins -> class; chain order ignored by the baseline)",
            "FASTA with chains joined by ':' and the label last in the header; table with id, label and sequence "
            "(':'-joined) or members (';'-joined ids, + --sequences), optional split / group columns",
            ("accuracy", "macro_f1", "mcc", "roc_auc", "pr_auc"), "accuracy", load_assembly,
            lr=2e-5, batch_size=8, epochs=5, symmetric=True,
        ),
        TaskSpec(
            "ss3", RESIDUE, "secondary structure, 3 states (per residue)", _SS,
            ("q3",), "q3", _load_ss(3), lr=5e-5, batch_size=8, epochs=5,
        ),
        TaskSpec(
            "ss8", RESIDUE, "secondary structure, 8 states (per residue)", _SS,
            ("q8",), "q8", _load_ss(8), lr=5e-5, batch_size=8, epochs=5,
        ),
        TaskSpec(
            "stability", REGRESSION, "protein stability score (sequence -> number; TAPE's stability_score)",
            "TAPE directory (stability_{train,valid,test}.json|lmdb); table with sequence, score[, id, split, group]",
            ("spearman", "pearson", "rmse", "mae"), "spearman", _load_score("stability", "stability_score"),
            lr=2e-5, batch_size=16, epochs=5,
        ),
        TaskSpec(
            "fluorescence", REGRESSION, "GFP fluorescence (sequence -> log fluorescence; TAPE)",
            "TAPE directory (fluorescence_{train,valid,test}.json|lmdb); table with sequence, score[, id, split, group]",
            ("spearman", "pearson", "rmse", "mae"), "spearman", _load_score("fluorescence", "log_fluorescence"),
            lr=2e-5, batch_size=16, epochs=5,
        ),
        TaskSpec(
            "multilabel", MULTILABEL, "any set of labels per protein (e.g. every compartment it is found in)",
            "table with sequence and labels (';'-joined names)[, id, split, group]",
            ("micro_f1", "label_macro_f1", "exact_match", "label_roc_auc"), "micro_f1", load_multilabel,
            lr=5e-5, batch_size=16, epochs=5,
        ),
    )
}  # fmt: skip


def load_task_data(
    spec: TaskSpec,
    data: str | None,
    split_seed: int = 0,
    strict: bool = False,
    background: str | None = None,
    sequences: str | None = None,
) -> TaskData:
    """The task's data from `--data` (None = built-in) with splits made by `split_seed` where needed."""
    loaded = spec.load(DataRequest(data, split_seed, ResiduePolicy(strict=strict), background, sequences))
    loaded.kind = spec.kind
    return loaded


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ProtlmError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]
