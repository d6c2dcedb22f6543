"""Protein chains of PDB and mmCIF files (gemmi): sequences, coordinates, interfaces, contacts.

- Format by extension: `.pdb` / `.ent` (legacy PDB) or `.cif` / `.mmcif` (PDBx/mmCIF, the PDB's
  default today), optionally gzipped. Model 1 only; hydrogens and alternative conformations beyond
  the first are dropped.
- Protein chains are the polymers gemmi classifies as L-peptides. The sequence is that of the
  **observed residues** (those with coordinates), not SEQRES: attention is mapped onto residues
  that have coordinates, and unobserved SEQRES residues could not be labelled anyway. Modified
  residues map to their parent amino acid (MSE -> M); unknown ones to X.
- Legacy PDB files whose columns 73-80 hold an old entry id and serial number (as 2HHB and 4AT1 in
  the wild) are read with those columns ignored when the strict read fails; elements then come
  from the atom names.
- Interface: a residue of chain A is at the interface with B when any of its heavy atoms lies
  within `cutoff` (default 5 A) of any heavy atom of B.
- Contacts: Cbeta-Cbeta distance < 8 A, with Calpha for glycine (and for a residue whose Cbeta is
  not observed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.errors import InputError

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
INTERFACE_CUTOFF = 5.0
CONTACT_CUTOFF = 8.0


@dataclass
class Chain:
    """One observed protein chain: residue i has `sequence[i]`, author number `numbers[i]`."""

    name: str
    sequence: str
    numbers: list[str]  # author residue numbers with insertion codes: "45", "52A"
    ca: np.ndarray  # (n, 3) Calpha (NaN where not observed)
    cb: np.ndarray  # (n, 3) Cbeta, Calpha for glycine / missing Cbeta
    atoms: np.ndarray  # (m, 3) heavy atoms
    atom_residue: np.ndarray  # (m,) residue index of each heavy atom

    def __len__(self) -> int:
        return len(self.sequence)


@dataclass
class Structure:
    id: str
    path: str
    chains: dict[str, Chain]  # protein chains in file order

    def chain(self, name: str) -> Chain:
        if name not in self.chains:
            have = ", ".join(self.chains) or "none"
            raise InputError(self.path, f"no protein chain {name!r} (protein chains: {have})")
        return self.chains[name]

    def pairs(self, cutoff: float = INTERFACE_CUTOFF, min_interface: int = 1) -> list[tuple[str, str]]:
        """Chain pairs (file order) with at least `min_interface` interface residues on each side."""
        names, out = list(self.chains), []
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ia, ib = interface(self.chains[a], self.chains[b], cutoff)
                if ia.sum() >= min_interface and ib.sum() >= min_interface:
                    out.append((a, b))
        return out


def is_structure(path: str | Path) -> bool:
    return Path(path).name.lower().removesuffix(".gz").endswith(STRUCTURE_SUFFIXES)


def _read_gemmi(path: Path):
    import gemmi

    try:
        return gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0]
        if "Wrong format" not in first or not path.name.lower().removesuffix(".gz").endswith((".pdb", ".ent")):
            raise InputError(path, f"not a readable structure ({first})") from None
    from protlm.io import open_text

    with open_text(path) as fh:  # legacy columns 73-80: keep columns 1-72 of coordinate records
        lines = [ln[:72] if ln.startswith(("ATOM", "HETATM", "ANISOU")) else ln.rstrip("\n") for ln in fh]
    try:
        return gemmi.read_pdb_string("\n".join(lines))
    except (RuntimeError, ValueError) as e:
        raise InputError(path, f"not a readable structure ({str(e).splitlines()[0]})") from None


def read_structure(path: str | Path) -> Structure:
    """The protein chains of model 1 of a PDB / mmCIF file."""
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if not is_structure(path):
        raise InputError(path, f"unknown structure format; expected {', '.join(STRUCTURE_SUFFIXES)} (optionally .gz)")
    st = _read_gemmi(path)
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(path, "no models (no ATOM / HETATM records)")
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    chains: dict[str, Chain] = {}
    for ch in st[0]:
        polymer = ch.get_polymer()
        if len(polymer) == 0 or polymer.check_polymer_type() != gemmi.PolymerType.PeptideL:
            continue
        if ch.name in chains:  # a chain split by ligands reappears: keep the first (polymer) part
            continue
        chain = _chain(ch.name, polymer)
        bad = np.flatnonzero(~np.isfinite(chain.atoms).all(axis=1))
        if len(bad):
            residue = chain.numbers[chain.atom_residue[bad[0]]]
            raise InputError(
                path, f"chain {ch.name} residue {residue}: an atom has a non-finite coordinate (nan or inf)"
            )
        chains[ch.name] = chain
    if not chains:
        raise InputError(path, "no protein chains (no L-peptide polymer in model 1)")
    return Structure(entry_id(path), str(path), chains)


def entry_id(path: str | Path) -> str:
    """`2hhb` for 2hhb.pdb, 2HHB.cif.gz, ...: the file name without structure suffixes."""
    name = Path(path).name.removesuffix(".gz")
    return name.rsplit(".", 1)[0] if is_structure(name) else name


def load_structures(paths: list[str | Path], log=lambda m: None) -> list[Structure]:
    """Structures of files and directories (every .pdb/.cif inside, sorted); one per entry id, the
    first seen (2hhb.pdb and 2hhb.cif are the same entry: the second is skipped and reported)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and is_structure(f))
            if not found:
                raise InputError(p, f"no structure files ({', '.join(STRUCTURE_SUFFIXES)}) in this directory")
            files.extend(found)
        else:
            files.append(p)
    out: dict[str, Structure] = {}
    for f in files:
        eid = entry_id(f).lower()
        if eid in out:
            log(f"{f}: same entry as {out[eid].path}, skipped")
            continue
        out[eid] = read_structure(f)
    return list(out.values())


def _chain(name: str, polymer) -> Chain:
    import gemmi

    seq, numbers, ca, cb, atoms, owner = [], [], [], [], [], []
    for k, res in enumerate(polymer):
        info = gemmi.find_tabulated_residue(res.name)
        code = info.one_letter_code.upper() if info is not None and info.one_letter_code.strip() else "X"
        seq.append(code if code.isalpha() else "X")
        numbers.append(f"{res.seqid.num}{res.seqid.icode.strip()}")
        pos = {a.name: a.pos for a in res}
        a = pos.get("CA")
        ca.append((a.x, a.y, a.z) if a is not None else (np.nan,) * 3)
        b = pos.get("CB") if res.name != "GLY" else None
        b = b if b is not None else a
        cb.append((b.x, b.y, b.z) if b is not None else (np.nan,) * 3)
        for atom in res:
            atoms.append((atom.pos.x, atom.pos.y, atom.pos.z))
            owner.append(k)
    return Chain(
        name,
        "".join(seq),
        numbers,
        np.asarray(ca, dtype=np.float64),
        np.asarray(cb, dtype=np.float64),
        np.asarray(atoms, dtype=np.float64).reshape(-1, 3),
        np.asarray(owner, dtype=np.int64),
    )


def interface(a: Chain, b: Chain, cutoff: float = INTERFACE_CUTOFF) -> tuple[np.ndarray, np.ndarray]:
    """(len(a),), (len(b),) bool: residues with a heavy atom within `cutoff` A of the other chain."""
    from scipy.spatial import cKDTree

    out = []
    for this, other in ((a, b), (b, a)):
        mask = np.zeros(len(this), dtype=bool)
        if len(this.atoms) and len(other.atoms):
            near = cKDTree(other.atoms).query_ball_point(this.atoms, r=cutoff, return_length=True) > 0
            mask[np.unique(this.atom_residue[near])] = True
        out.append(mask)
    return out[0], out[1]


def contact_map(chain: Chain, cutoff: float = CONTACT_CUTOFF) -> np.ndarray:
    """(n, n) bool Cbeta-Cbeta (Calpha for glycine) < cutoff; False where a coordinate is missing."""
    d = np.linalg.norm(chain.cb[:, None, :] - chain.cb[None, :, :], axis=-1)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(d, nan=np.inf) < cutoff
