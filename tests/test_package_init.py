"""robust_dae_tf/__init__.py: TF_ENABLE_ONEDNN_OPTS=1 unless the user set it, before TensorFlow loads."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = (
    "import os, robust_dae_tf, tensorflow\n"
    "from tensorflow.python.util import _pywrap_util_port as port\n"
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())\n"
)


@pytest.mark.parametrize("user_value, expected", [(None, "1 True"), ("0", "0 False")])
def test_onednn_is_switched_on_unless_the_user_chose(user_value, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    if user_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    # What TensorFlow reports (its kernels are chosen when it is imported), and the variable as left.
    assert out.stdout.split("\n")[-2] == expected
