#!/usr/bin/env bash
# Run the explorer's widget tests against ipywidgets 7.7.1 (what Colab ships) as well as 8.
# A throwaway venv holds only ipywidgets 7.7.1 and its two small companions; everything else
# (torch, camkit, pytest) comes from the project's .venv through a .pth file, and the venv's own
# site-packages come first, so `import ipywidgets` finds 7.7.1. About 10 s plus the tests.
# Usage: tests/run_ipywidgets7.sh [VENV_DIR]   (run from the repository root, .venv active)
set -euo pipefail
main_python="${PYTHON:-python}"
target="${1:-${TMPDIR:-/tmp}/camkit-ipywidgets7}"
site=$("$main_python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$main_python" -m venv --clear "$target"
target_site=$("$target/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import site; site.addsitedir('$site')" > "$target_site/zz_camkit_main_venv.pth"
"$target/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "ipywidgets==7.7.1" "ipython_genutils==0.2.0" "widgetsnbextension==3.6.10"
"$target/bin/python" -c "import ipywidgets; assert ipywidgets.__version__ == '7.7.1', ipywidgets.__version__"
"$target/bin/python" -m pytest -q -p no:cacheprovider tests/test_widgets.py \
    -W "ignore:The \`ipykernel.comm.Comm\` class has been deprecated:DeprecationWarning"
