"""Side-by-side benchmark of vitc against PyTorch (transformers), ONNX Runtime and OpenVINO on any checkpoint
vitc loads: `vitc bench --model ID_OR_DIR --compare torch,onnxruntime,openvino` (the peers come with
`pip install "vitc[bench]"`). Never imported by `import vitc`.

    families.py    per architecture: the vitc class, the transformers class (PyTorch, ONNX export), the output timed
    checkpoint.py  the checkpoint, its FLOPs, cached ONNX / int8 exports, random checkpoints of bench_vit.py
    engines.py     vitc and the peers, one class each, per-dtype modes, missing-package detection
    runner.py      the method: outputs checked, shuffled round-robin rounds with pauses, statistics
    memory.py      cold start and peak RSS in fresh processes
    machine.py     CPU, load, versions, estimated peak per dtype
    report.py      tables, markdown, JSON written whole;  chart.py  the SVG bar chart
    options.py     the command-line options shared by `vitc bench` and benchmarks/bench_vit.py
"""
