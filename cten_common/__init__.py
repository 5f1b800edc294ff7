"""Framework-free parts of CTEN shared by ``cten_jt`` and ``cten_torch_ref``.

Everything here works on numpy arrays and plain Python values only: the model
configuration and its inference from a checkpoint, the parameter
initialisation, and the checkpoint filter that unwraps, renames and checks
state dicts.
"""
