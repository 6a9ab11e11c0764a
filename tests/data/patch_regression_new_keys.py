"""Adds ONLY named new keys to tests/data/regression_digits.json; every recorded value stays.

Run: PYTHONPATH=. python tests/data/patch_regression_new_keys.py [KEY ...] (default: issue
23's report keys). Used for issue 23 (attack_runs, gradient_evaluations, ensemble_members)
issue 24 (evaluate's flags encoder, decoder, pixel_range, prior; summary key
model_source; the per-image files) and PGD's towards_starts / --attack_towards_starts.

Runs the recorder's commands (recorder.observe), then copies from the observation the keys
that the recording lacks and whose names are in NEW_KEYS (nothing else), checks that the
patched recording then matches the observation exactly as test_regression compares it,
and writes it back in the recorder's format."""
import json, os, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.data import record_regression as recorder
from tests import test_regression as t

# KEY arguments add dict keys; "+TEXT" arguments accept, in a recorded list of strings (a file
# layout, report lines), the new items that contain TEXT (and blank lines), when the list is
# otherwise unchanged.
NEW_KEYS = {a for a in sys.argv[1:] if not a.startswith("+")} or (
    set() if len(sys.argv) > 1 else {"attack_runs", "gradient_evaluations", "ensemble_members"})
NEW_ITEMS = [a[1:] for a in sys.argv[1:] if a.startswith("+")]
with open(recorder.JSON_PATH) as f:
    payload = json.load(f)
observed, timing = recorder.observe(tempfile.mkdtemp(prefix="ens_regression_"))
added = []

def patch(rec, obs, path):
    if isinstance(rec, dict) and isinstance(obs, dict):
        for key in obs:
            if key not in rec:
                if key in NEW_KEYS:
                    rec[key] = obs[key]
                    added.append(f"{path}/{key}")
            else:
                patch(rec[key], obs[key], f"{path}/{key}")
    elif isinstance(rec, list) and isinstance(obs, list) and len(rec) < len(obs) and NEW_ITEMS and all(
            isinstance(o, str) for o in obs) and [o for o in obs if o and not any(t in o for t in NEW_ITEMS)] == [
                r for r in rec if r]:
        added.append(f"{path}[+{len(obs) - len(rec)} items]")
        rec[:] = obs
    elif isinstance(rec, list) and isinstance(obs, list) and len(rec) == len(obs):
        for i, (r, o) in enumerate(zip(rec, obs)):
            patch(r, o, f"{path}[{i}]")

patch(payload["observations"], observed, "")
print("\n".join(added))
t.RECORDED = payload["observations"]
t.assert_matches(payload["observations"], observed)  # everything else still as recorded
with open(recorder.JSON_PATH, "w") as f:
    json.dump(payload, f, indent=1, sort_keys=True)
    f.write("\n")
print("patched", len(added), "paths; timing", timing)
