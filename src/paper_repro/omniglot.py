"""Omniglot for MACAW's Fig 6 (App. C.1): 20-way 1-shot classification tasks over handwritten characters.

The data is supplied by the user, never downloaded: ``images_background`` and ``images_evaluation`` as the
Omniglot authors distribute them (github.com/brendenlake/omniglot), each a folder or a ``.zip`` of it,
holding ``<alphabet>/<character>/<drawing>.png`` (105×105, black strokes on white). :func:`load` turns
it into one array of 28×28 grey images in [0, 255], one row per character, as the Omniglot helper of
torchmeta (which the paper cites) resizes them.

Split (App. C.1: "the training/validation split of Vinyals et al. as implemented by torchmeta"): 1028
training, 172 validation and 423 test characters of the 1623, drawn by a seeded permutation of the sorted
character names (:func:`split_characters`; [ours]: the split is derived, not copied). Every character gives
four classes, its drawings rotated by 0, 90, 180 and 270 degrees (torchmeta's class augmentation).
"""

from __future__ import annotations

import io as _io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

SETS = ("images_background", "images_evaluation")
SPLIT_SIZES = (1028, 172, 423)
"""Characters of the training, validation and test splits (Vinyals et al.; torchmeta's omniglot)."""
SIDE = 28
"""Images are resized to SIDE × SIDE (torchmeta's helper: Resize(28))."""
ROTATIONS = 4


def missing_message(root: str | Path) -> str:
    return (f"Omniglot is not at {root}/: put the Omniglot authors' images_background and images_evaluation "
            f"there (each the folder or its .zip, from github.com/brendenlake/omniglot's python/ folder). "
            f"Nothing is downloaded at run time.")


def source_files(root: str | Path) -> list[Path] | None:
    """Each set's folder or zip under ``root`` (the folder when both exist); None when a set is missing."""
    root, found = Path(root), []
    for name in SETS:
        folder, archive = root / name, root / f"{name}.zip"
        if folder.is_dir():
            found.append(folder)
        elif archive.is_file():
            found.append(archive)
        else:
            return None
    return found


def _drawings(source: Path) -> dict[str, dict[str, bytes | Path]]:
    """``alphabet/character`` -> {drawing file name: its path or bytes}, from a set's folder or zip."""
    chars: dict[str, dict[str, bytes | Path]] = {}
    if source.is_dir():
        for png in sorted(source.glob("*/*/*.png")):
            chars.setdefault(f"{png.parent.parent.name}/{png.parent.name}", {})[png.name] = png
        return chars
    try:
        with zipfile.ZipFile(source) as z:
            for info in z.infolist():
                parts = Path(info.filename).parts
                if info.is_dir() or not info.filename.endswith(".png"):
                    continue
                if len(parts) < 3:
                    raise ValueError(f"{source}: {info.filename} is not <alphabet>/<character>/<drawing>.png")
                chars.setdefault(f"{parts[-3]}/{parts[-2]}", {})[parts[-1]] = z.read(info)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{source} is not a readable zip ({e}); supply the Omniglot authors' archive or its folder") from e
    return chars


def _image(data: bytes | Path, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(data if isinstance(data, Path) else _io.BytesIO(data)) as im:
            return np.asarray(im.convert("L").resize((SIDE, SIDE), Image.BILINEAR), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{where}: not a readable image ({e})") from e


def load(root: str | Path) -> tuple[np.ndarray, list[str]]:
    """Every character of both sets: ``images [n_characters, n_drawings, 28, 28]`` uint8 and the names
    ``<set>/<alphabet>/<character>``, sorted. Every character must have the same number of drawings."""
    files = source_files(root)
    if files is None:
        raise FileNotFoundError(missing_message(root))
    names, images = [], []
    for source in files:
        set_name = source.name.removesuffix(".zip")
        chars = _drawings(source)
        if not chars:
            raise ValueError(f"{source}: no <alphabet>/<character>/<drawing>.png inside")
        for char in sorted(chars):
            drawings = chars[char]
            names.append(f"{set_name}/{char}")
            images.append([_image(drawings[d], f"{source}: {char}/{d}") for d in sorted(drawings)])
    counts = {len(x) for x in images}
    if len(counts) != 1:
        worst = min(range(len(images)), key=lambda i: len(images[i]))
        raise ValueError(f"{root}: characters have {sorted(counts)} drawings; every one needs the same number "
                         f"({names[worst]} has {len(images[worst])})")
    order = np.argsort(names)
    return np.stack([np.stack(images[i]) for i in order]), [names[i] for i in order]


def split_characters(n: int, seed: int, sizes: Sequence[int] = SPLIT_SIZES) -> dict[str, np.ndarray]:
    """Indices (into the sorted names) of the train, val and test characters: a permutation of ``n`` by
    ``seed``, cut at ``sizes``; with other than sum(sizes) characters (a fixture), cut in proportion."""
    if n != sum(sizes):
        cuts = np.round(np.cumsum(sizes)[:-1] / sum(sizes) * n).astype(int)
    else:
        cuts = np.cumsum(sizes)[:-1]
    parts = np.split(np.random.default_rng(seed).permutation(n), cuts)
    return {name: np.sort(p) for name, p in zip(("train", "val", "test"), parts)}


def sample_tasks(images: np.ndarray, characters: np.ndarray, ways: int, shots: int, query: int, n_tasks: int,
                 rng: np.random.Generator, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """``n_tasks`` N-way K-shot tasks over the classes (character, rotation) of ``characters``: per task
    ``ways`` distinct classes, labelled 0..ways-1 in the drawn order, each with ``shots`` support and
    ``query`` query drawings, distinct. Returns ``support_x [T, ways·shots, 784]`` in [0, 1],
    ``support_y [T, ways·shots]`` and ``query_x``, ``query_y`` likewise."""
    n_classes, n_drawings = len(characters) * ROTATIONS, images.shape[1]
    if ways > n_classes or shots + query > n_drawings:
        raise ValueError(f"{ways}-way {shots}-shot tasks with {query} queries need {ways} classes and "
                         f"{shots + query} drawings per class; the split has {n_classes} and {n_drawings}")
    xs = np.empty((n_tasks, ways, shots + query, SIDE, SIDE), dtype=np.uint8)
    for t in range(n_tasks):
        for label, c in enumerate(rng.choice(n_classes, ways, replace=False)):
            drawings = images[characters[c // ROTATIONS], rng.choice(n_drawings, shots + query, replace=False)]
            xs[t, label] = np.rot90(drawings, k=c % ROTATIONS, axes=(1, 2))
    x = torch.as_tensor(xs, device=device).float().div_(255).flatten(-2)
    y = torch.arange(ways, device=device).view(1, ways, 1)
    return {"support_x": x[:, :, :shots].reshape(n_tasks, ways * shots, -1),
            "support_y": y.expand(n_tasks, ways, shots).reshape(n_tasks, -1),
            "query_x": x[:, :, shots:].reshape(n_tasks, ways * query, -1),
            "query_y": y.expand(n_tasks, ways, query).reshape(n_tasks, -1)}


# --- a generated stand-in, in the same layout (tests and the smoke scale; never the real data) -----------


def write_fixture(root: str | Path, alphabets: int = 2, characters: int = 10, drawings: int = 20,
                  seed: int = 0, zipped: bool = True) -> None:
    """Random-stroke "characters" in Omniglot's layout under ``root``: per set, ``alphabets`` alphabets of
    ``characters`` characters, each drawn ``drawings`` times as three jittered strokes of one prototype
    (so drawings of a character resemble each other), 105×105 PNGs, black on white; as zips or folders."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for set_name in SETS:
        files = {}
        for a in range(alphabets):
            for c in range(characters):
                strokes = rng.uniform(15, 90, size=(3, 4, 2))
                for d in range(drawings):
                    im = Image.new("L", (105, 105), 255)
                    draw = ImageDraw.Draw(im)
                    for stroke in strokes + rng.normal(0, 3, size=strokes.shape):
                        draw.line([tuple(p) for p in stroke], fill=0, width=4)
                    buf = _io.BytesIO()
                    im.convert("1").save(buf, format="PNG")
                    files[f"{set_name}/Alphabet_{a}/character{c + 1:02d}/{a:02d}{c:02d}_{d + 1:02d}.png"] = buf.getvalue()
        if zipped:
            tmp = root / f"{set_name}.zip.tmp"
            with zipfile.ZipFile(tmp, "w") as z:
                for name, data in files.items():
                    z.writestr(name, data)
            tmp.replace(root / f"{set_name}.zip")
        else:
            for name, data in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
