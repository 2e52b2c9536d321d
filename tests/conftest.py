import os
import sys

# tests import the flat top-level scripts (model.py, eval.py, ...) and the data package
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
