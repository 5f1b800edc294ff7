"""Cross-framework tools: what needs Jittor and PyTorch side by side.

Above both twins (``cten_jt``, ``cten_torch_ref``) and the converters
(``weights_convert``), which never import it (``tests/test_import_graph.py``).
``parity_report``: the output-by-output table, Jittor against PyTorch
(``cten-parity-report``).  The benchmarks that compare the frameworks live on
the same floor, in ``benchmarks``.
"""
