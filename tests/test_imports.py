import subprocess
import sys


def test_cli_service_and_store_start_without_importing_torch():
    # Every `kshot` command and the API server import these; torch costs seconds and is not needed.
    code = (
        "import sys, kshot, kshot.cli.main, kshot.tracking, kshot.service, kshot.training\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "from kshot import MetaTrainer, load_config\n"
        "assert 'torch' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
