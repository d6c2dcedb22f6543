"""Attention analysis: structures, interfaces, token->residue maps, sites, contacts, HTML reports."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import DATA, run_cli, write
from protlm.attention import contacts as C
from protlm.attention.maps import AttentionModel, token_to_residue
from protlm.attention.sites import precision_at_k, roc_auc
from protlm.attention.structures import contact_map, interface, read_structure
from protlm.errors import InputError, ProtlmError

PDB = DATA / "structures" / "2hhb_ab.pdb.gz"  # chains A, B of 2HHB, legacy columns 73-80 kept
CIF = DATA / "structures" / "2hhb_ab.cif.gz"  # the same chains written as mmCIF


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random 2-layer micro RoBERTa with 400 positions (room for the 2HHB alpha-beta pair)."""
    from protlm.models import build_mlm
    from protlm.tokenization import load_tokenizer

    out = tmp_path_factory.mktemp("attn") / "model"
    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    build_mlm(str(DATA / "micro.yaml"), tok, seed=0, num_hidden_layers=2, max_position_embeddings=402).save_pretrained(
        out, safe_serialization=True
    )
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return AttentionModel(model_dir)


def test_pdb_and_mmcif_give_the_same_chains_and_sequences():
    a, b = read_structure(PDB), read_structure(CIF)
    assert list(a.chains) == list(b.chains) == ["A", "B"]
    for name in "AB":
        assert a.chains[name].sequence == b.chains[name].sequence
        assert a.chains[name].numbers == b.chains[name].numbers
        np.testing.assert_allclose(a.chains[name].atoms, b.chains[name].atoms, atol=1e-3)
    assert a.chains["A"].sequence.startswith("VLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF")  # human alpha globin
    assert len(a.chains["A"]) == 141 and len(a.chains["B"]) == 146  # hemes and waters are not protein


def test_interface_of_the_alpha1_beta1_contact():
    """Hand-checked against the alpha1-beta1 packing contact of haemoglobin (Perutz): helices B, G, H
    of alpha against B, G, H of beta; heme-pocket histidines and the N-terminus are not in it."""
    st = read_structure(PDB)
    ia, ib = interface(st.chain("A"), st.chain("B"), cutoff=5.0)
    alpha = {st.chain("A").numbers[i] + st.chain("A").sequence[i] for i in np.flatnonzero(ia)}
    beta = {st.chain("B").numbers[i] + st.chain("B").sequence[i] for i in np.flatnonzero(ib)}
    assert {"31R", "34L", "35S", "103H", "107V", "111A", "114P", "119P", "122H", "126D"} <= alpha
    assert {"30R", "34V", "35Y", "108N", "112C", "115A", "119G", "124P", "127Q"} <= beta
    assert not {"58H", "87H", "1V"} & alpha  # distal / proximal heme histidines, N-terminus
    assert (ia.sum(), ib.sum()) == (22, 21)
    wide = interface(st.chain("A"), st.chain("B"), cutoff=8.0)[0]
    assert (wide >= ia).all() and wide.sum() > ia.sum()  # the cutoff is honoured


def test_contact_map_uses_cbeta_and_calpha_for_glycine():
    chain = read_structure(PDB).chain("A")
    cmap = contact_map(chain)
    assert cmap.shape == (141, 141) and (cmap == cmap.T).all() and cmap.diagonal().all()
    gly = chain.sequence.index("G")
    np.testing.assert_array_equal(chain.cb[gly], chain.ca[gly])
    i, j = 10, 14  # one helical turn apart: C-beta distance by hand
    assert cmap[i, j] == (np.linalg.norm(chain.cb[i] - chain.cb[j]) < 8.0)


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("water.pdb", "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00           O\nEND\n",
         "no protein chains"),
        ("broken.cif", "data_x\n_atom_site.id\n1 2\nloop_\n", "not a readable structure"),
        ("empty.pdb", "", "no models"),
        ("notes.txt", "hello\n", "unknown structure format"),
    ],
)  # fmt: skip
def test_bad_structure_files_are_clear_errors(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(InputError, match=message) as e:
        read_structure(path)
    assert str(path) in str(e.value)


def test_cli_structure_errors_exit_2_in_one_line(model_dir, tmp_path, capsys):
    water = write(
        tmp_path / "water.pdb", "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00           O\n"
    )
    for args, message in [
        (["attention", "sites", "--model", str(model_dir), "--pdb", str(water)], f"{water}: no protein chains"),
        (
            ["attention", "sites", "--model", str(model_dir), "--pdb", str(PDB), "--chains", "A,Z"],
            "no protein chain 'Z'",
        ),
        (["contacts", "--model", str(model_dir)], "give --model DIR and one of --pdb FILE or --fasta FILE"),
    ]:
        code, _, err = run_cli(args, capsys)
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_token_to_residue_map_conserves_mass(model):
    st = read_structure(PDB)
    seqs = (st.chain("A").sequence, st.chain("B").sequence)
    att = model(seqs, "2hhb", ("A", "B"))
    n = len(seqs[0]) + len(seqs[1])
    assert att.attention.shape == (2, 2, n, n)
    np.testing.assert_allclose(att.attention.sum(-1) + att.special, 1.0, atol=1e-5)  # every residue row
    # summing the columns of a token's residues gives back the token's column
    ids, pos = model.encode(seqs)
    import torch

    with torch.inference_mode():
        raw = torch.stack(model.model(input_ids=torch.from_numpy(ids)[None], output_attentions=True).attentions)
    raw = raw[:, 0].numpy()
    t = int(np.bincount(pos).argmax())  # a token covering several residues
    cols = np.flatnonzero(pos == t)
    assert len(cols) > 1
    np.testing.assert_allclose(att.attention[..., cols].sum(-1), raw[:, :, pos, t], atol=1e-6)
    np.testing.assert_allclose(att.attention[..., cols[0], :], att.attention[..., cols[-1], :])  # rows copied


def test_token_to_residue_by_hand():
    att = np.array([[[[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]]])  # <s>, token of 2 residues, </s>
    residue, special = token_to_residue(att, np.array([1, 1]), np.array([0, 2, 0]))
    np.testing.assert_allclose(residue[0, 0], [[0.3, 0.3], [0.3, 0.3]])
    np.testing.assert_allclose(special[0, 0], [0.4, 0.4])


def test_apc_and_precision_at_l_by_hand():
    f = np.array([[0.0, 1, 2], [1, 0, 3], [2, 3, 0]])
    # row sums 3, 4, 5; total 12: APC_ij = F_ij - r_i r_j / 12
    expected = f - np.outer([3, 4, 5], [3, 4, 5]) / 12
    np.testing.assert_allclose(C.apc(f), expected)
    assert C.apc(f)[0, 1] == pytest.approx(0.0) and C.apc(f)[1, 2] == pytest.approx(3 - 20 / 12)
    n = 40
    scores, true = np.zeros((n, n)), np.zeros((n, n), dtype=bool)
    for k, (i, j) in enumerate([(0, 30), (1, 35), (2, 39), (3, 33), (5, 36), (4, 29)]):
        scores[i, j] = scores[j, i] = 10 - k  # six best long-range pairs, in this order
    for i, j in [(0, 30), (2, 39), (4, 29)]:
        true[i, j] = true[j, i] = True
    # L/5 = 8 top pairs: the six scored ones (3 true) + two zero-score pairs in order (not contacts)
    assert C.precision_at(scores, true, 24, None, 8) == pytest.approx(3 / 8)
    assert C.precision_at(scores, true, 24, None, 2) == pytest.approx(1 / 2)  # L/20
    table = C.precision_table(scores, true)
    assert table["long"]["L/5"] == pytest.approx(3 / 8) and table["medium"]["L"] == 0.0


def test_auc_and_precision_at_k_by_hand():
    labels = np.array([True, False, True, False, False])
    assert roc_auc(np.array([0.9, 0.8, 0.7, 0.1, 0.2]), labels) == pytest.approx(5 / 6)
    assert roc_auc(np.array([1.0, 1, 1, 1, 1]), labels) == pytest.approx(0.5)  # ties count half
    assert precision_at_k(np.array([0.9, 0.8, 0.7, 0.1, 0.2]), labels, 2) == pytest.approx(0.5)


def test_too_long_and_longformer_inputs_are_refused(micro_model, tmp_path):
    st = read_structure(PDB)
    with pytest.raises(ProtlmError, match="tokens, the model takes 128"):
        AttentionModel(micro_model)((st.chain("A").sequence, st.chain("B").sequence))


def test_export_sites_contacts_cli_and_report(model_dir, tmp_path, capsys):
    code, out, err = run_cli(["attention", "export", "--model", str(model_dir), "--pdb", str(PDB), "--chains", "A,B",
                              "--out", str(tmp_path / "a.npz")], capsys)  # fmt: skip
    assert code in (0, None), err
    z = np.load(tmp_path / "a.npz")
    assert z["2hhb_ab:AB.attention"].shape == (2, 2, 287, 287) and z["2hhb_ab:AB.interface"].sum() == 43
    assert json.loads(str(z["_meta"]))["layers"] == 2
    fasta = write(tmp_path / "x.fasta", ">one\nMKVLAAGIVGLLLA\n>cplx\nMKVLAAG:GIVGLL:AAKR\n")
    code, out, err = run_cli(["attention", "export", "--model", str(model_dir), "--fasta", str(fasta),
                              "--out", str(tmp_path / "b.npz")], capsys)  # fmt: skip
    assert code in (0, None), err
    z = np.load(tmp_path / "b.npz")
    assert z["one.attention"].shape[-1] == 14 and list(z["cplx.chain_index"]) == [0] * 7 + [1] * 6 + [2] * 4

    report = tmp_path / "sites.html"
    code, out, err = run_cli(["attention", "sites", "--model", str(model_dir), "--pdb", str(PDB), "--pdb", str(CIF),
                              "--reference", str(model_dir), "--out", str(tmp_path / "s.json"),
                              "--report", str(report)], capsys)  # fmt: skip
    assert code in (0, None), err
    assert "2hhb_ab.cif.gz: same entry as" in err  # the PDB and mmCIF files of one entry count once
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_cases"] == 2 and summary["selection"].startswith("in-sample")
    assert np.array(summary["per_head_auc"]["to"]["mean"]).shape == (2, 2)
    assert 0.45 < summary["random_auc"]["mean"] < 0.55
    assert summary["reference"]["held_out_auc"] == summary["held_out_auc"]  # the same model as reference
    assert (tmp_path / "sites_head_auc.png").stat().st_size > 1000

    code, out, err = run_cli(["contacts", "fit", "--model", str(model_dir), "--pdb", str(PDB)], capsys)
    assert code in (0, None), err
    assert (model_dir / "contact_regression.safetensors").is_file()
    meta = json.loads((model_dir / "contact_regression.json").read_text())
    assert meta["structures"] == ["2hhb_ab:A", "2hhb_ab:B"] and meta["penalty"] == "l1"
    code, out, err = run_cli(["contacts", "--model", str(model_dir), "--pdb", str(CIF), "--chain", "A",
                              "--out", str(tmp_path / "c.json"), "--report", str(tmp_path / "c.html")], capsys)  # fmt: skip
    assert code in (0, None), err
    assert "L1 logistic regression fitted on 2hhb_ab:A" in err
    table = json.loads((tmp_path / "c.json").read_text())["chains"]["A"]
    assert set(table) == {"short", "medium", "long"} and set(table["long"]) == {"L", "L/2", "L/5"}
    _renders(report, 3)  # head AUC, reference head AUC, one attention map per complex
    _renders(tmp_path / "c.html", 1)


def _renders(page, n_images):
    """Open the report in headless Chromium: every embedded image decodes, no script error."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (make test installs Debian's chromium)")
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={page.parent / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'data-rendered="ok"' in proc.stdout and 'data-errors="0"' in proc.stdout
    assert f'data-images="{n_images}"' in proc.stdout


def test_sites_over_a_folder_choose_heads_on_other_complexes(model, tmp_path):
    """Leave one complex out: two 'complexes' (the same entry under two names) choose heads on each other."""
    from protlm.attention.sites import analyse
    from protlm.attention.structures import load_structures

    shutil.copy(PDB, tmp_path / "first.pdb.gz")
    shutil.copy(CIF, tmp_path / "second.cif.gz")
    result = analyse(model, load_structures([tmp_path]))
    summary = result.summary()
    assert summary["selection"] == "leave one complex out" and summary["complexes"] == ["first", "second"]
    by_case = {r.case.name: r for r in result.results}
    for h in summary["held_out"]:
        cid = h["case"].split(":")[0]
        others = np.nanmean([r.auc for r in result.results if r.case.complex != cid], 0)
        head = np.unravel_index(np.nanargmax(others), others.shape)
        assert h["auc"] == pytest.approx(by_case[h["case"]].auc[head])  # chosen elsewhere, scored here


def test_contacts_from_sequence_alone_after_fit(model_dir, tmp_path, capsys):
    """After `contacts fit`, maps from sequences alone (no structure), as ESM's contact head gives them:
    the same scores that `contacts --pdb` measures for that chain."""
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    code, _, err = run_cli(["contacts", "fit", "--model", str(model), "--pdb", str(PDB)], capsys)
    assert code in (0, None), err
    st = read_structure(PDB)
    alpha, beta = st.chain("A").sequence, st.chain("B").sequence
    fasta = write(tmp_path / "s.fasta", f">alpha\n{alpha}\n>beta/1\n{beta}\n")
    out = tmp_path / "maps.npz"
    code, stdout, err = run_cli(["contacts", "--model", str(model), "--fasta", str(fasta), "--out", str(out)], capsys)
    assert code in (0, None), err
    assert "L1 logistic regression fitted on 2hhb_ab:A, 2hhb_ab:B" in err and "2 contact maps written to" in stdout
    maps = np.load(out)
    assert maps["alpha.contacts"].shape == (141, 141) and maps["beta%2F1.contacts"].shape == (146, 146)
    np.testing.assert_array_equal(maps["alpha.contacts"], maps["alpha.contacts"].T)
    assert str(maps["alpha.sequence"]) == alpha and json.loads(str(maps["_meta"]))["ids"] == ["alpha", "beta%2F1"]
    lm = AttentionModel(model)
    expected = C.predict(lm, st.chain("A"), "2hhb_ab:A", C.ContactRegression.load(model))
    np.testing.assert_allclose(maps["alpha.contacts"], expected, rtol=1e-5, atol=1e-6)
    code, _, err = run_cli(["contacts", "--model", str(model), "--fasta", str(fasta)], capsys)
    assert code == 2 and "give --out FILE.npz" in err
    joined = write(tmp_path / "j.fasta", f">ab\n{alpha}:{beta}\n")
    code, _, err = run_cli(["contacts", "--model", str(model), "--fasta", str(joined), "--out", str(out)], capsys)
    assert code == 2 and "(record ab): one chain per record" in err and np.load(out)["alpha.contacts"].shape


def _synthetic_sites(aucs: dict[str, list[list[float]]]):
    """A SitesResult whose cases have the given per-head AUCs (direction `to`, layer 1, heads 1-2);
    everything else 0.5. No model: the weighting alone is under test."""
    from protlm.attention.sites import CaseResult, SiteCase, SitesResult

    results = []
    for cid, cases in aucs.items():
        for k, heads in enumerate(cases):
            auc = np.full((2, 1, 2), 0.5)
            auc[0, 0] = heads
            case = SiteCase(cid, f"C{k}", "X", np.array([True, False]), np.zeros((2, 1, 2, 2)))
            results.append(CaseResult(case, auc, auc / 2, 1, (0.5, 0.0), 0.5))
    return SitesResult("m", results)


def test_sites_headline_weighs_every_complex_the_same():
    """A 'ribosome' of 8 cases where head 1 works and 3 dimers where head 2 does: pooled over cases, the
    ribosome chose the head for every dimer and made the headline."""
    ribosome = [[0.9, 0.6]] * 8
    summary = _synthetic_sites({"ribo": ribosome, "d1": [[0.4, 0.8]] * 2, "d2": [[0.4, 0.7]] * 2,
                                "d3": [[0.45, 0.75]] * 2}).summary()  # fmt: skip
    chosen = {c["complex"]: c["head"] for c in summary["per_complex"]}
    # each dimer's head is chosen on the other three complexes, each weighing 1/3, not on 12 pooled cases
    assert chosen == {"ribo": "to L1H2", "d1": "to L1H2", "d2": "to L1H2", "d3": "to L1H2"}
    per = {c["complex"]: c["auc"] for c in summary["per_complex"]}
    assert per == pytest.approx({"ribo": 0.6, "d1": 0.8, "d2": 0.7, "d3": 0.75})
    assert summary["held_out_auc_by_complex"] == pytest.approx({"mean": 0.7125, "std": np.std([0.6, 0.8, 0.7, 0.75]),
                                                                "n": 4})  # fmt: skip
    assert summary["held_out_auc"]["mean"] == pytest.approx((8 * 0.6 + 2 * (0.8 + 0.7 + 0.75)) / 14)  # pooled, beside
    assert summary["held_out_auc"]["n"] == 14 and [c["n_cases"] for c in summary["per_complex"]] == [8, 2, 2, 2]


def test_sites_cli_prints_the_headline_by_complex_and_each_complex(model_dir, tmp_path, capsys):
    shutil.copy(PDB, tmp_path / "first.pdb.gz")
    shutil.copy(CIF, tmp_path / "second.cif.gz")
    code, out, err = run_cli(["attention", "sites", "--model", str(model_dir), "--pdb", str(tmp_path),
                              "--out", str(tmp_path / "s.json")], capsys)  # fmt: skip
    assert code in (0, None), err
    summary = json.loads((tmp_path / "s.json").read_text())
    auc, pooled = summary["held_out_auc_by_complex"], summary["held_out_auc"]
    lines = out.splitlines()
    assert lines[0] == (
        f"model: leave one complex out head AUC {auc['mean']:.3f} ± {auc['std']:.3f}, P@k "
        f"{summary['held_out_p_at_k_by_complex']['mean']:.3f} over 2 complexes weighted equally; pooled over 4 "
        f"cases: AUC {pooled['mean']:.3f} ± {pooled['std']:.3f}, P@k {summary['held_out_p_at_k']['mean']:.3f}"
    )
    assert [line.split(":")[0] for line in lines[1:3]] == ["  first", "  second"] and "over 2 cases" in lines[1]


@pytest.mark.shared
def test_shared_complexes_all_read(shared_data):
    for path in sorted((shared_data / "structures").glob("*.*")):
        if path.suffix in (".pdb", ".cif"):
            st = read_structure(path)
            assert len(st.chains) >= 2 and st.pairs()
