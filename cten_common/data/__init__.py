"""Framework-free data pipeline shared by cten_jt and cten_torch_ref (numpy only).

Small named steps, as in mmaction2: read (readers/, audio.py), features
(fbank.py), sample (sampling.py), transform (transforms.py); the data sets
(datasets.py) put them together and the framework packages wrap them.
"""
