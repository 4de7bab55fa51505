# Stand-in for ansible-test's pip bootstrap script (get-pip.py), which comes
# from a host this machine cannot reach: it runs pip straight from pip's own
# wheel from PyPI (pip supports running from its wheel), as get-pip.py runs
# its embedded copy: `pip install <the packages ansible-test asks for>`.
import glob
import os
import sys

WHEEL = glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-*.whl"))[0]
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

sys.exit(main(["install", "--upgrade", "--force-reinstall"] + sys.argv[1:]))
