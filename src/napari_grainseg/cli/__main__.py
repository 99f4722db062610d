import sys

from napari_grainseg.cli import main

sys.exit(main())
