"""``massive-feeds recordings``: list the recorder's session folders (including those a killed process
left behind) and save one as a dataset, so ``backtest``/``quality``/``validate`` can use it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DatasetError

DEFAULT_DIR = "data/live_recorded"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recordings", help="list recording folders; save one as a dataset",
        description="List the recorder's session folders under --save-dir (a folder whose recording never "
                    "stopped, e.g. after the process was killed, is 'interrupted' but intact up to its last "
                    "flush). 'recordings save FOLDER' turns one into a dataset for backtest, quality and validate.")
    p.add_argument("--save-dir", default=DEFAULT_DIR, help=f"the recorder's folder (default {DEFAULT_DIR})")
    p.set_defaults(func=cmd_list)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    s = actions.add_parser("save", help="save a recording folder as a dataset",
                           description="Build bars from a recording folder and save them (with a copy of the raw "
                                       "event log) as a dataset.")
    s.add_argument("folder", help="the session folder (a path, or its name under --save-dir)")
    s.add_argument("--name", help="dataset name (default massive_live_<tag>_<YYYYMMDD>)")
    s.add_argument("--tag", default="session", help="dataset tag (default session)")
    s.add_argument("--interval", default="1min", help="bar size (1s, 1min, 5min …; default 1min)")
    s.add_argument("--save-dir", default=DEFAULT_DIR, dest="save_dir_save",
                   help=f"where to look for a bare folder name (default {DEFAULT_DIR})")
    s.set_defaults(func=cmd_save)


def cmd_list(args: argparse.Namespace) -> int:
    from ..record.library import list_recordings

    table = list_recordings(args.save_dir)
    if table.empty:
        print(f"no recordings under {Path(args.save_dir).resolve()}")
        return 0
    import pandas as pd

    def when(t: object, missing: str = "") -> str:
        return missing if pd.isna(t) else f"{t:%Y-%m-%d %H:%M:%S}"

    shown = table.drop(columns=["path"]).assign(
        symbols=table["symbols"].map(", ".join),
        started=table["started"].map(when),
        stopped=table["stopped"].map(lambda t: when(t, "–")),
        first_event=table["first_event"].map(when),
        last_event=table["last_event"].map(when),
    )
    print(shown.to_string(index=False))
    print(f"\nfolder: {Path(args.save_dir).resolve()}  ·  save one: massive-feeds recordings save SESSION")
    return 0


def resolve_folder(folder: str, save_dir: str) -> Path:
    """``folder`` as given, else ``save_dir/folder``; a :class:`DatasetError` when neither is a recording."""
    from ..record.log import SEGMENT_GLOB

    for candidate in (Path(folder), Path(save_dir) / folder):
        if candidate.is_dir() and any(candidate.glob(SEGMENT_GLOB)):
            return candidate
    raise DatasetError(f"{folder!r} is not a recording folder (no seg-*.mflog in it or under {save_dir}); "
                       "see massive-feeds recordings")


def cmd_save(args: argparse.Namespace) -> int:
    from ..record.library import save_recording_dataset
    from ..record.reader import RecordingReader

    folder = resolve_folder(args.folder, args.save_dir_save)
    if RecordingReader(folder).count() == 0:
        raise DatasetError(f"recording {folder} holds no quotes or trades; nothing to save")
    path = save_recording_dataset(folder, args.name, args.interval, tag=args.tag)
    from ..datasets import dataset_info

    info = dataset_info(path)
    print(f"saved recording {folder.name} as dataset {path.stem}: {info.get('rows', '?')} bars of {args.interval} "
          f"from {info.get('events', '?')} events -> {path}")
    return 0


def recording_folder_hint(name: str) -> None:
    """Raise a :class:`DatasetError` saying how to save it when ``name`` is a recording folder, not a dataset."""
    from ..record.log import SEGMENT_GLOB

    p = Path(name)
    if p.is_dir() and any(p.glob(SEGMENT_GLOB)):
        raise DatasetError(f"{name} is a recording folder, not a dataset: save it first with "
                           f"massive-feeds recordings save {name} (then use the dataset name it prints)")
