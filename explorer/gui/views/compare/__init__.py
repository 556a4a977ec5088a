"""The compare view's parts (explorer/gui/views/compare_view.py is the view): the loss curves of every
run, the Table IX-style table, and the LoRA paper's analyses (subspace φ, amplification, intrinsic
rank) under one module and pair picker. Each part draws a CompareSnapshot and takes the view's Style.
"""
