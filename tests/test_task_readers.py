"""Task readers on tiny fixtures in each source's exact format (tests/data/tasks/README.md)."""

from __future__ import annotations

import json
import pickle
import shutil

import lmdb
import numpy as np
import pytest

from conftest import write
from protlm.errors import InputError, ProtlmError
from protlm.tasks import DataRequest, get_task
from protlm.tasks.data import IGNORE
from protlm.tasks.readers import read_deeploc_fasta
from protlm.tasks.structure import SS8_TO_SS3
from protlm.tasks.tcr import make_tcr_splits, read_tcr_positives


@pytest.fixture
def tasks_dir(data_dir):
    return data_dir / "tasks"


def load(task, data, **kw):
    return get_task(task).load(DataRequest(str(data) if data else None, **kw))


def test_deeploc_fasta_labels_and_test_flag(tasks_dir):
    splits, report = read_deeploc_fasta(tasks_dir / "deeploc_small.fasta")
    assert report.n_read == 30 and report.n_used == 30
    assert len(splits["test"]) == 6  # every 5th record is marked `test`
    first = splits["train"][0]
    assert first.id == "A0A183" and first.label == 0  # 'Nucleus-M' -> Nucleus, the membrane flag is dropped
    data = load("localization", tasks_dir / "deeploc_small.fasta")
    assert set(data.splits) == {"train", "dev", "test"}
    assert sum(len(v) for v in data.splits.values()) == 30


def test_deeploc_label_outside_label_space_is_an_error(tmp_path):
    path = write(tmp_path / "bad.fasta", ">P1 Nucleus-S\nMKV\n>P2 Chloroplast-S test\nMKL\n")
    with pytest.raises(InputError, match=r"bad.fasta line 3 \(record P2\): label 'Chloroplast' is not in the label"):
        read_deeploc_fasta(path)


def test_deeploc_bad_residue_names_line(tmp_path):
    path = write(tmp_path / "bad.fasta", ">P1 Nucleus-S\nMKV\n>P2 Cytoplasm-S\nMK#L\n")
    with pytest.raises(InputError, match=r"line 3 \(record P2\): invalid residue '#'"):
        read_deeploc_fasta(path)


def test_scl2205_is_the_default_localization_data():
    data = load("localization", None)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 15183, "dev": 1260, "test": 2631}
    assert len(data.labels) == 13


def test_deepsol_split_files(tasks_dir):
    data = load("solubility", tasks_dir / "deepsol")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 20, "dev": 6, "test": 6}
    assert [ex.label for ex in data.splits["train"][:4]] == [0, 1, 0, 1]


def test_deepsol_label_count_mismatch_and_bad_label(tmp_path, tasks_dir):
    d = tmp_path / "ds"
    shutil.copytree(tasks_dir / "deepsol", d)
    (d / "val_tgt").write_text("0\n1\n")
    with pytest.raises(InputError, match="val_tgt: 2 labels for 6 sequences"):
        load("solubility", d)
    (d / "val_tgt").write_text("0\n1\n2\n0\n1\n0\n")
    with pytest.raises(InputError, match=r"val_tgt line 3 \(record val:3\): label '2' is not in the label space"):
        load("solubility", d)


def test_solubility_needs_data():
    with pytest.raises(ProtlmError, match="no built-in data"):
        load("solubility", None)


def test_tape_remote_homology_json(tasks_dir):
    data = load("remote-homology", tasks_dir / "remote_homology")
    assert set(data.splits) == {"train", "dev", "test_fold_holdout"}
    assert len(data.labels) == 1195
    assert data.splits["train"][1].label == 1  # fold_label of record 1
    assert data.test_splits == ["test_fold_holdout"]


def test_tape_json_fold_label_out_of_range(tmp_path):
    rec = {"id": "d1", "primary": "MKV", "fold_label": 1195}
    write(tmp_path / "remote_homology_train.json", json.dumps([rec]))
    with pytest.raises(InputError, match=r"record d1\): label '1195' is not in the label space"):
        load("remote-homology", tmp_path)


def test_peer_localization_lmdb(tmp_path):
    d = tmp_path / "peer"
    d.mkdir()
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        env = lmdb.open(str(d / f"subcellular_localization_{split}.lmdb"), map_size=1 << 20)
        with env.begin(write=True) as txn:
            for i in range(n):
                txn.put(str(i).encode(), pickle.dumps({"primary": "MKVLA" * (i + 1), "localization": np.int64(i % 10)}))
            txn.put(b"num_examples", pickle.dumps(n))
        env.close()
    data = load("localization", d)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 4, "dev": 2, "test": 2}
    assert [ex.label for ex in data.splits["train"]] == [0, 1, 2, 3]


def test_tape_secondary_structure_lmdb(tasks_dir):
    data3 = load("ss3", tasks_dir / "secondary_structure")
    data8 = load("ss8", tasks_dir / "secondary_structure")
    assert set(data3.splits) == {"train", "dev", "cb513"}
    ex3, ex8 = data3.splits["train"][0], data8.splits["train"][0]
    assert len(ex3.label) == len(ex3.parts[0])
    assert ex3.label[0] == IGNORE and ex8.label[0] == IGNORE  # valid_mask 0 -> unscored
    np.testing.assert_array_equal(SS8_TO_SS3[ex8.label[1:]], ex3.label[1:])


def test_dssp_table_and_its_errors(tasks_dir, tmp_path):
    data = load("ss3", tasks_dir / "ss_dssp_small.tsv")
    assert sum(len(v) for v in data.splits.values()) == 40
    ex = next(iter(data.splits["train"]))
    assert set(np.unique(ex.label)) <= {0, 1, 2}
    bad = write(tmp_path / "ss.tsv", "pdb_id\tchain\tsequence\tdssp8\n1ABC\tA\tMKVL\tHHH\n")
    with pytest.raises(InputError, match=r"ss.tsv line 2 \(record 1ABC_A\): dssp8 has 3 letters for 4 residues"):
        load("ss8", bad)
    bad = write(tmp_path / "ss.tsv", "pdb_id\tchain\tsequence\tdssp8\n1ABC\tA\tMKVL\tHHQH\n")
    with pytest.raises(InputError, match="unknown DSSP state 'Q'"):
        load("ss8", bad)


def test_dssp_split_is_cluster_disjoint(tasks_dir):
    data = load("ss3", tasks_dir / "ss_dssp_small.tsv", seed=3)
    groups = {k: {ex.group for ex in v} for k, v in data.splits.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["dev"]


def test_pfam_family_table(tasks_dir):
    data = load("family", tasks_dir / "pfam_small.tsv")
    assert data.labels == ("PF00189", "PF00499", "PF01578")
    assert sum(len(v) for v in data.splits.values()) == 36


def test_titan_directory(tasks_dir):
    data = load("tcr", tasks_dir / "titan")
    assert {"train", "dev", "test"} <= set(data.splits)
    assert sum(len(v) for v in data.splits.values()) == 138
    ex = data.splits["test"][0]
    assert ex.id == "epi3|tcr17" and ex.label == 1 and ex.parts[0].startswith("C")  # (CDR3, epitope) order


def test_titan_unknown_id_is_an_error(tasks_dir, tmp_path):
    d = tmp_path / "titan"
    shutil.copytree(tasks_dir / "titan", d)
    with open(d / "test+covid.csv", "a") as fh:
        fh.write("38,epi99,tcr1,1\n")
    with pytest.raises(InputError, match=r"test\+covid.csv line 40 \(record epi99\|tcr1\): epitope 'epi99' is not in"):
        load("tcr", d)


def test_vdjdb_export_keeps_trb_rows(tasks_dir):
    positives, report = read_tcr_positives(tasks_dir / "vdjdb_small.tsv")
    assert report.n_read == 25 and len(positives) == 25  # 30 rows, 5 TRA rows are not TCR beta chains
    assert all(c.startswith("C") for c, _ in positives)


def test_tcr_splits_unseen_epitope_and_tcr(tasks_dir):
    data = load("tcr", tasks_dir / "tcr_pairs_small.tsv", background=str(tasks_dir / "tcr_background_small.txt"))
    s = data.splits
    assert set(s) == {"train", "dev", "test-unseen-tcr", "test-unseen-epitope"}
    train_epi = {ex.parts[1] for ex in s["train"] if ex.label == 1}
    train_tcr = {ex.parts[0] for ex in s["train"]}
    assert not {ex.parts[1] for ex in s["test-unseen-epitope"]} & train_epi
    assert not {ex.parts[0] for ex in s["test-unseen-tcr"] if ex.label == 1} & train_tcr
    known = {ex.parts for split in s.values() for ex in split if ex.label == 1}
    for split in s.values():
        negatives = [ex for ex in split if ex.label == 0]
        assert not {ex.parts for ex in negatives} & known  # a negative is never a known binder
        assert len(negatives) <= sum(ex.label for ex in split)


def test_tcr_splits_are_reproducible():
    pos = [(f"CASS{c}F", f"EPI{e}LLL") for c in "ACDEFGHIKLMN" for e in "ACDEF"]
    a, b = make_tcr_splits(pos, None, seed=1), make_tcr_splits(pos, None, seed=1)
    assert {k: [x.id for x in v] for k, v in a.items()} == {k: [x.id for x in v] for k, v in b.items()}
    shuffled = make_tcr_splits(list(reversed(pos)), None, seed=1)  # positives' splits do not depend on order
    assert {k: {x.id for x in v if x.label} for k, v in a.items()} == {
        k: {x.id for x in v if x.label} for k, v in shuffled.items()
    }
    other = make_tcr_splits(pos, None, seed=2)
    assert {k: {x.id for x in v if x.label} for k, v in a.items()} != {
        k: {x.id for x in v if x.label} for k, v in other.items()
    }


def test_ppi_builtin_and_peer_lmdb(data_dir, tmp_path):
    data = load("ppi", None)
    assert {"train", "dev", "test"} == set(data.splits)
    assert data.class_counts("test") == {"0": 175, "1": 175}
    d = tmp_path / "peer"
    d.mkdir()
    for split in ("train", "valid", "test"):
        shutil.copytree(data_dir / "human_ppi_small.lmdb", d / f"human_ppi_{split}.lmdb")
    data = load("ppi", d)
    assert set(data.splits) == {"train", "dev", "test"} and len(data.splits["train"]) > 0


def test_ppi_table_without_splits_is_refused(tmp_path, data_dir):
    import pandas as pd

    df = pd.read_csv(data_dir / "pairs_small.tsv", sep="\t").drop(columns=["split"])
    df.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="protlm pairs build"):
        load("ppi", tmp_path / "p.tsv")


def test_assembly_fasta_and_member_table_agree(tasks_dir):
    fasta = load("assembly", tasks_dir / "assemblies_small.fasta")
    table = load("assembly", tasks_dir / "assembly_members_small.tsv",
                 sequences=str(tasks_dir / "assembly_members_small.fasta"))  # fmt: skip
    assert fasta.labels == table.labels == ("0", "1")
    for data in (fasta, table):
        examples = [ex for split in data.splits.values() for ex in split]
        assert len(examples) == 24 and all(len(ex.parts) == 3 for ex in examples)
        assert sorted(data.splits) == ["dev", "test", "train"]
    by_id = lambda data: {ex.id: (ex.parts, ex.label) for s in data.splits.values() for ex in s}  # noqa: E731
    assert by_id(fasta) == by_id(table)


def test_assembly_errors_name_file_line_and_record(tasks_dir, tmp_path):
    with pytest.raises(InputError, match=r"give --sequences"):
        load("assembly", tasks_dir / "assembly_members_small.tsv")
    bad = write(tmp_path / "m.tsv", "id\tmembers\tlabel\nc1\tP01275;NOPE\t1\n")
    with pytest.raises(InputError, match=r"m.tsv line 2 \(record c1\): protein 'NOPE' is not in"):
        load("assembly", bad, sequences=str(tasks_dir / "assembly_members_small.fasta"))
    bad = write(tmp_path / "a.fasta", ">c1 1\nMKV:MSQ\n>c2 0\nMKV::MSQ\n")
    with pytest.raises(InputError, match=r"a.fasta line 3 \(record c2\): chain 2 is empty"):
        load("assembly", bad)
    bad = write(tmp_path / "s.tsv", "id\tsequence\tlabel\tsplit\nc1\tMKV:MSQ\t1\ttrain\nc2\tMKV:MSQ\t0\tholdout\n")
    with pytest.raises(InputError, match=r"split 'holdout' of c2"):
        load("assembly", bad)
