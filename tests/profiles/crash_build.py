"""Run by test_store_crash.py in a subprocess: rebuild one store part over a pickled batch list, announcing (on
stdout) when the new version folder is being written, so that the test can kill -9 it right then."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from segmentation_pipelines.profiles import layout as layout_mod
from segmentation_pipelines.profiles import store
from segmentation_pipelines.profiles.layout import StoreLayout


def main() -> None:
    root, part, inputs = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    profiles, events, policy = pickle.loads(inputs.read_bytes())
    original = layout_mod.publish_version

    def slow_publish(parent, version):
        # The folder is complete but not published: say so and wait to be killed.
        print(f"WRITTEN {version}", flush=True)
        sys.stdin.readline()
        original(parent, version)

    store.publish_version = slow_publish
    layout = StoreLayout(Path(root))
    print("STARTED", flush=True)
    if part == "identity_graph":
        store.build_identity_graph_store(layout, profiles, events)
    elif part == "events":
        store.build_events_store(layout, events)
    else:
        store.build_merged_profiles(layout, profiles, policy)


if __name__ == "__main__":
    main()
