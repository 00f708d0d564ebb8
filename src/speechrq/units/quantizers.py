"""Unit quantizers of a feature space: k-means, residual k-means, PQ and RPQ (RPQ paper, sections III-IV).

Every kind is a list of ``M`` sub-quantizers, each a k-means codebook over a subset
of the ``D`` feature dimensions, so one frame becomes ``M`` unit ids:

- ``kmeans``: ``M = 1``, all dimensions, ``k`` centroids (the paper's best ``k = 2000``);
- ``rvq``: ``M`` levels over all dimensions, level ``m`` fit on the residual of levels ``< m``
  (Table III's baseline); the frame is rebuilt as the sum of its centroids;
- ``pq``: ``M`` contiguous sub-vectors of about ``D / M`` dimensions (``np.array_split``),
  rebuilt by concatenation;
- ``rpq``: ``M`` subsets of ``round(alpha * D)`` dimensions, each drawn independently
  at random (seeded), so subsets overlap; each dimension is rebuilt as the mean of
  the centroids of the sub-spaces that cover it (the paper's estimator, eq. 11), and a
  dimension no subset covers as the training mean.

Each sub-quantizer is one ``faiss.Kmeans`` (faiss's ``ProductQuantizer`` cannot do
``k* = 2000``), seeded with ``seed + m`` (independent random initialisation per
sub-quantizer, as the paper), on the GPU when faiss has one. faiss trains on at most
``max_points_per_centroid * k`` points and otherwise subsamples silently; here the
number of points each sub-quantizer trained on is recorded.

Numbers are checked where they enter: :meth:`UnitQuantizer.fit`, :meth:`~UnitQuantizer.encode` and
:meth:`~UnitQuantizer.encode_torch` refuse rows holding NaN or inf, or values whose squared norm
overflows float32 (where faiss's distances would), naming the rows and, when the caller says,
the utterance (``source``); an encoding never returns an id outside ``[0, k)`` (faiss answers -1
for a row it cannot place); a loaded quantizer must hold finite centroids and statistics.

A fitted quantizer is saved as ``units.safetensors`` (centroids, dimension subsets,
normalisation) and ``units.json`` (kind, sizes, seed, the encoder layer and its
fingerprint, the training points): loading never unpickles anything.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SpeechrqError
from ..io import atomic_path, atomic_write_json, read_json

KINDS = ("kmeans", "rvq", "pq", "rpq")
log = logging.getLogger(__name__)
WEIGHTS_FILE, META_FILE = "units.safetensors", "units.json"
FORMAT_VERSION = 1


@dataclass
class QuantizerSpec:
    """What to fit. ``num_subspaces`` is M (1 for kmeans), ``alpha`` RPQ's share of dimensions per subset."""

    kind: str = "kmeans"
    k: int = 2000
    num_subspaces: int = 1
    alpha: float = 0.125
    seed: int = 0
    niter: int = 20
    max_points_per_centroid: int = 256  # faiss's default; the points actually used are recorded
    normalize: str = "none"  # "none" or "standardize" (per-dimension mean/std of the training sample)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise SpeechrqError(f"kind {self.kind!r}: choose from {', '.join(KINDS)}")
        if self.k < 2 or self.k > 65535:
            raise SpeechrqError(f"k: {self.k}: between 2 and 65535 (units are stored as uint16)")
        if self.num_subspaces < 1 or (self.kind == "kmeans" and self.num_subspaces != 1):
            raise SpeechrqError(f"M: {self.num_subspaces}: kmeans has exactly one stream; rvq/pq/rpq need M >= 1")
        if not 0 < self.alpha <= 1:
            raise SpeechrqError(f"alpha: {self.alpha}: must be in (0, 1]")
        if self.normalize not in ("none", "standardize"):
            raise SpeechrqError(f"normalize: {self.normalize!r}: choose none or standardize")
        if self.niter < 1 or self.max_points_per_centroid < 1:
            raise SpeechrqError("niter and max_points_per_centroid: must be >= 1")


def subspaces(kind: str, dim: int, m: int, alpha: float, seed: int) -> list[np.ndarray]:
    """The dimension subsets of the ``m`` sub-quantizers (sorted int64 index arrays)."""
    if kind in ("kmeans", "rvq"):
        return [np.arange(dim) for _ in range(m)]
    if kind == "pq":
        if m > dim:
            raise SpeechrqError(f"pq: M = {m} sub-vectors of a {dim}-dimensional feature: at most {dim}")
        return [np.asarray(s, dtype=np.int64) for s in np.array_split(np.arange(dim), m)]
    d = max(1, round(alpha * dim))
    if d != alpha * dim:  # never silently: say what each sub-space takes (the subsets are saved with the quantizer)
        log.warning("rpq: alpha %g of %d dimensions is %g; each sub-space takes %d dimensions (alpha %g in effect)",
                    alpha, dim, alpha * dim, d, d / dim)
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(dim, size=d, replace=False)).astype(np.int64) for _ in range(m)]


def bad_rows(x: np.ndarray) -> np.ndarray:
    """``[N]`` bool: rows of float32 ``x [N, D]`` holding NaN or inf, or whose squared norm overflows float32
    (faiss's L2 distances would be inf or NaN). One pass, no copy of ``x``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return ~np.isfinite(np.einsum("ij,ij->i", x, x))


def check_rows(x: np.ndarray, what: str, source: str | None = None) -> None:
    """Refuse ``x [N, D]`` (float32) when a row is unusable (:func:`bad_rows`), in one line naming the rows and ``source``."""
    bad = bad_rows(x)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise SpeechrqError(_bad_rows_message(what, source, rows, len(x), not np.isfinite(x[rows[:1000]]).all()))


def _bad_rows_message(what: str, source: str | None, rows: np.ndarray, total: int, nonfinite: bool) -> str:
    kind = "NaN or inf" if nonfinite else "values too large for float32 distances"
    shown = ", ".join(map(str, rows[:3].tolist())) + (" ..." if len(rows) > 3 else "")
    return (f"{what}{f' of {source}' if source else ''}: {len(rows)} of {total} rows hold {kind} (rows {shown}); "
            "the features are broken upstream (audio, statistics or encoder)")


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int, max_ppc: int, gpu: bool):
    import faiss

    if len(x) < k:
        raise SpeechrqError(f"k-means: {len(x)} training points for k = {k} centroids; sample more frames or lower k")
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, max_points_per_centroid=max_ppc, gpu=gpu, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids.astype(np.float32), min(len(x), max_ppc * k)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (L2) of every row: ``[N]`` int64, by faiss's exact search."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    ids = ids[:, 0]
    if len(ids) and (ids.min() < 0 or ids.max() >= len(centroids)):  # faiss says -1 where it found no centroid
        rows = np.flatnonzero((ids < 0) | (ids >= len(centroids)))
        raise SpeechrqError(f"units: no nearest centroid for {len(rows)} of {len(ids)} rows (first row {rows[0]}, id {ids[rows[0]]}); "
                            f"ids must lie in [0, {len(centroids)})")
    return ids


@dataclass
class UnitQuantizer:
    """A fitted quantizer: ``encode [N, D] -> [N, M]`` unit ids, ``decode`` back to ``[N, D]``."""

    spec: QuantizerSpec
    centroids: list[np.ndarray]  # M x [k, d_m]
    subsets: list[np.ndarray]  # M x [d_m] dimension indices
    mean: np.ndarray  # [D] training mean (the normaliser's, and the fill of uncovered dims)
    std: np.ndarray  # [D] (ones unless normalize == "standardize")
    trained_points: list[int] = field(default_factory=list)
    source: dict = field(default_factory=dict)  # encoder path, fingerprint, layer

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def num_streams(self) -> int:
        return len(self.centroids)

    @property
    def bits_per_frame(self) -> float:
        return self.num_streams * math.log2(self.spec.k)

    @classmethod
    def fit(cls, x: np.ndarray, spec: QuantizerSpec, source: dict | None = None, gpu: bool | None = None,
            progress: bool = False) -> "UnitQuantizer":
        """Fit on ``x [N, D]`` (any float dtype; float32 inside). Rows holding NaN or inf (or overflowing float32
        distances) are refused with a :class:`SpeechrqError`, never handed to faiss."""
        spec.validate()
        if gpu is None:
            gpu = faiss_gpus() > 0
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise SpeechrqError(f"units fit: training features of shape {tuple(x.shape)}; expected [N > 0, D]")
        check_rows(x, "units fit: the training features")
        mean = x.mean(0)
        std = x.std(0) + 1e-5 if spec.normalize == "standardize" else np.ones(x.shape[1], np.float32)
        z = (x - mean) / std if spec.normalize == "standardize" else x
        m = 1 if spec.kind == "kmeans" else spec.num_subspaces
        subsets = subspaces(spec.kind, x.shape[1], m, spec.alpha, spec.seed)
        cap = spec.max_points_per_centroid * spec.k
        if len(x) > cap:  # faiss subsamples silently; say so once (recorded as trained_points)
            log.warning("units fit: faiss trains each codebook on %d of the %d sample frames (max_points_per_centroid %d x k %d)",
                        cap, len(x), spec.max_points_per_centroid, spec.k)
        elif len(x) < 39 * spec.k:
            log.warning("units fit: %d sample frames for k = %d: fewer than the 39 per centroid faiss asks for; "
                        "centroids will be noisy (sample more frames or lower k)", len(x), spec.k)
        from tqdm import tqdm

        centroids, points = [], []
        residual = z.copy() if spec.kind == "rvq" else None
        for i, s in enumerate(tqdm(subsets, desc=f"fit {spec.kind}", unit="codebook", disable=not progress or m == 1)):
            data = residual if residual is not None else z[:, s]
            c, n = _kmeans(data, spec.k, spec.seed + i, spec.niter, spec.max_points_per_centroid, gpu)
            if not np.isfinite(c).all():
                raise SpeechrqError(f"units fit: codebook {i} came out non-finite (k-means on values of magnitude up to "
                                    f"{float(np.abs(data).max()):.3g}); rescale the features (normalize: standardize)")
            if residual is not None:
                residual -= c[_nearest(residual, c)]
            centroids.append(c)
            points.append(n)
        return cls(spec, centroids, subsets, mean.astype(np.float32), std.astype(np.float32), points, dict(source or {}))

    def normalized(self, x: np.ndarray) -> np.ndarray:
        """``[N, D]`` features in the space the codebooks live in (standardised when ``normalize`` says so), float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SpeechrqError(f"units: features of shape {tuple(x.shape)}; this quantizer takes [N, {self.dim}]")
        return (x - self.mean) / self.std if self.spec.normalize == "standardize" else x

    def encode(self, x: np.ndarray, source: str | None = None) -> np.ndarray:
        """``[N, D]`` -> ``[N, M]`` uint16 unit ids, each in ``[0, k)``. Rows holding NaN or inf are refused in one line
        naming them and ``source`` (what the rows are, e.g. ``"utterance X"``), never turned into an id."""
        z = self.normalized(x)
        check_rows(z, "units encode: features", source)
        codes = np.empty((len(z), self.num_streams), dtype=np.uint16)
        if self.spec.kind == "rvq":
            r = z.copy()
            for i, c in enumerate(self.centroids):
                ids = _nearest(r, c)
                r -= c[ids]
                codes[:, i] = ids
            return codes
        for i, (c, s) in enumerate(zip(self.centroids, self.subsets)):
            codes[:, i] = _nearest(z[:, s], c)
        return codes

    def encode_torch(self, x, chunk: int = 8192, source: str | None = None):
        """``[N, D]`` tensor (any device) -> ``[N, M]`` int64 unit ids, nearest centroids by batched matmuls on that device.

        What ``units encode`` uses when the encoder runs on a GPU, so frames never leave it;
        the same ids as :meth:`encode` up to float ties. Rows holding NaN or inf (or whose squared
        norm overflows float32) are refused as :meth:`encode` refuses them (argmin would pick id 0).
        """
        import torch

        z = x.float()
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise SpeechrqError(f"units: features of shape {tuple(z.shape)}; this quantizer takes [N, {self.dim}]")
        if self.spec.normalize == "standardize":
            z = (z - torch.as_tensor(self.mean, device=z.device)) / torch.as_tensor(self.std, device=z.device)
        bad = ~torch.isfinite((z * z).sum(1))  # NaN, inf, or a squared norm past float32: the same rule as encode
        if bool(bad.any()):
            rows = bad.nonzero().flatten()
            nonfinite = not bool(torch.isfinite(z[rows[:1000]]).all())
            raise SpeechrqError(_bad_rows_message("units encode: features", source, rows.cpu().numpy(), len(z), nonfinite))
        cents = [torch.as_tensor(c, device=z.device) for c in self.centroids]
        subsets = [torch.as_tensor(s, device=z.device) for s in self.subsets]
        out = torch.empty(len(z), self.num_streams, dtype=torch.long, device=z.device)
        for start in range(0, len(z), chunk):  # bounded [chunk, k] distance blocks
            part = z[start : start + chunk]
            residual = part.clone() if self.spec.kind == "rvq" else None
            for i, (c, s) in enumerate(zip(cents, subsets)):
                v = residual if residual is not None else part[:, s]
                ids = ((c * c).sum(1)[None] - 2 * v @ c.T).argmin(1)  # ||v||^2 is the same for every centroid
                out[start : start + chunk, i] = ids
                if residual is not None:
                    residual -= c[ids]
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``[N, M]`` unit ids -> ``[N, D]`` features rebuilt from their centroids (see the module docstring)."""
        codes = np.asarray(codes, dtype=np.int64)
        if self.spec.kind == "rvq":
            z = sum(c[codes[:, i]] for i, c in enumerate(self.centroids))
        else:
            total = np.zeros((len(codes), self.dim), np.float32)
            cover = np.zeros(self.dim, np.float32)
            for i, (c, s) in enumerate(zip(self.centroids, self.subsets)):
                total[:, s] += c[codes[:, i]]
                cover[s] += 1
            base = np.zeros(self.dim, np.float32) if self.spec.normalize == "standardize" else self.mean
            z = np.where(cover > 0, total / np.maximum(cover, 1), base)
        return z * self.std + self.mean if self.spec.normalize == "standardize" else z

    def coverage(self) -> np.ndarray:
        """``[D]``: how many sub-quantizers cover each dimension."""
        cover = np.zeros(self.dim, np.int64)
        for s in self.subsets:
            cover[s] += 1
        return cover

    # ---------------------------------------------------------------- saving
    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean, "std": self.std}
        for i, (c, s) in enumerate(zip(self.centroids, self.subsets)):
            tensors[f"centroids.{i}"], tensors[f"subset.{i}"] = np.ascontiguousarray(c), np.ascontiguousarray(s)
        with atomic_path(d / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp))
        atomic_write_json(d / META_FILE, {"format": FORMAT_VERSION, "spec": asdict(self.spec), "num_streams": self.num_streams,
                                          "dim": self.dim, "trained_points": self.trained_points, "source": self.source,
                                          "bits_per_frame": self.bits_per_frame})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "UnitQuantizer":
        from safetensors.numpy import load_file

        d = Path(directory)
        if not (d / META_FILE).exists() or not (d / WEIGHTS_FILE).exists():
            raise SpeechrqError(f"{d}: not a fitted unit quantizer (no {META_FILE} / {WEIGHTS_FILE}; make one with `speechrq units fit`)")
        meta = read_json(d / META_FILE)  # one line for a malformed file or a key given twice
        if meta.get("format") != FORMAT_VERSION:
            raise SpeechrqError(f"{d / META_FILE}: format {meta.get('format')!r}, this speechrq reads {FORMAT_VERSION}")
        t = load_file(str(d / WEIGHTS_FILE))
        m = int(meta["num_streams"])
        check_quantizer_weights(t, m, int(meta["dim"]), int(meta["spec"]["k"]), d / WEIGHTS_FILE)
        for name, v in t.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                raise SpeechrqError(f"{d / WEIGHTS_FILE}: {name} holds NaN or inf; fit the quantizer again (`speechrq units fit`)")
        if (t["std"] <= 0).any():
            raise SpeechrqError(f"{d / WEIGHTS_FILE}: std holds zero or negative values; fit the quantizer again (`speechrq units fit`)")
        return cls(QuantizerSpec(**meta["spec"]), [t[f"centroids.{i}"] for i in range(m)], [t[f"subset.{i}"] for i in range(m)],
                   t["mean"], t["std"], list(meta["trained_points"]), dict(meta["source"]))


def check_quantizer_weights(t: dict[str, np.ndarray], m: int, dim: int, k: int, source: Path) -> None:
    """Refuse a quantizer's weights unless they are exactly ``mean``, ``std`` ([dim] each) and, for each of the ``m``
    streams, ``subset.i`` ([d_i] dimension indices in ``[0, dim)``) and ``centroids.i`` ([k, d_i]): one line naming how
    many are missing, unexpected or of another shape (:func:`speechrq.checkpoint.describe_weight_mismatch`)."""
    from ..checkpoint import describe_weight_mismatch

    want = {"mean": (dim,), "std": (dim,)}
    for i in range(m):
        d_i = t[f"subset.{i}"].shape[0] if f"subset.{i}" in t and t[f"subset.{i}"].ndim == 1 else -1
        want[f"subset.{i}"], want[f"centroids.{i}"] = (max(d_i, 0),), (k, d_i)
    missing = [name for name in want if name not in t]
    unexpected = [name for name in t if name not in want]
    mismatched = [(name, tuple(t[name].shape), shape) for name, shape in want.items() if name in t and tuple(t[name].shape) != shape]
    if (why := describe_weight_mismatch(missing, unexpected, mismatched)):
        raise SpeechrqError(f"{source}: the weights do not match the quantizer of its {META_FILE} ({m} streams, k = {k}, "
                            f"{dim} dimensions): {why}; fit the quantizer again (`speechrq units fit`)")
    bad = [f"subset.{i}" for i in range(m) if t[f"subset.{i}"].size and not (0 <= t[f"subset.{i}"].min() <= t[f"subset.{i}"].max() < dim)]
    if bad:
        raise SpeechrqError(f"{source}: {', '.join(bad[:3])} index dimensions outside 0..{dim - 1}; fit the quantizer again (`speechrq units fit`)")


def faiss_gpus() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
