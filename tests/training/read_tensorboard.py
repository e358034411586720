"""Reads a TensorBoard log directory with the real `tensorboard` package:
    read_tensorboard.py LOGDIR OUT_JSON
OUT_JSON: {"scalars": {tag: [[wall_time, step, value], ...]}, "first_event": {...},
"num_events": N} from EventAccumulator (scalars) and event_file_loader (raw events, which
checks every record's CRC). Exit 77 when tensorboard is missing.
"""
import glob
import json
import os
import sys


def main():
    logdir, out = sys.argv[1], sys.argv[2]
    try:
        from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    except ImportError as e:
        print(f"tensorboard unavailable: {e}", file=sys.stderr)
        sys.exit(77)
    files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
    if len(files) != 1:
        print(f"expected one event file in {logdir}, found {files}", file=sys.stderr)
        sys.exit(1)
    events = list(event_file_loader.LegacyEventFileLoader(files[0]).Load())
    first = events[0]
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    scalars = {tag: [[e.wall_time, e.step, e.value] for e in acc.Scalars(tag)]
               for tag in acc.Tags()["scalars"]}
    result = {"scalars": scalars, "num_events": len(events),
              "first_event": {"file_version": first.file_version, "wall_time": first.wall_time,
                              "step": first.step}}
    with open(out, "w") as fo:
        json.dump(result, fo)


if __name__ == "__main__":
    main()
