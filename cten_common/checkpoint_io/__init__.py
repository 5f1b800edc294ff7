"""Reading and writing weights and checkpoints; no file we read ever runs code.

One job a module:

==================  ==============================================================
``errors``          ``CheckpointError``, ``UnsafeFileError``, ``Refused``
``pickle_io``       the restricted unpickler; Jittor ``.pkl`` read and written
``torch_files``     PyTorch's zip checkpoints without PyTorch, and both PyTorch
                    formats through ``torch.load(weights_only=True)``
``safetensors_io``  safetensors: the header checked, our weights and run
                    checkpoints read and written
``sniff``           which format a file is (``sniff_format``, ``weights_kind``)
                    and ``read_checkpoint``, the one entry for reading
``atomic``          writes that publish a whole file or leave the old one
``filter``          the checkpoint filter: unwrap, strip ``module.``, rename a
                    backbone, check names and shapes (``match_state_dict``)
``run_paths``       a run folder's ``last``/``best`` checkpoints
==================  ==============================================================

A file that would run code raises ``UnsafeFileError``; a damaged or foreign one
``CheckpointError``; both are ``ValueError`` and name the file.
"""
