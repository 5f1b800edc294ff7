"""Deployment: CTEN exported to ONNX through the PyTorch twin (``cten-export``), and run by
ONNX Runtime or OpenVINO (``cten-predict --engine``) without Jittor or PyTorch.

A floor above the two frameworks (``tests/test_import_graph.py``): exporting reads the
twin, ``cten-predict`` offers Jittor's engine beside the runtimes.  See docs/deploy.md.
"""
