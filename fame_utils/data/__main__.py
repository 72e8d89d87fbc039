"""``python -m fame_utils.data align``: regenerate the aligned faces (see :mod:`fame_utils.data.build`)."""

import sys

from fame_utils.data.build import main

sys.exit(main())
