"""benchmarks/layer_profile.py (cten-bench layers): the two profiles parsed into stages and
layer kinds, from made-up logs whose sums are known."""
import pytest

from benchmarks import layer_profile as lp

VERBOSE = """noise before
CALL
onednn_verbose,exec,cpu,convolution,jit:avx512_core,forward_inference,src,attr,alg:convolution_direct,mb16_ic3oc64_id16od16kd7sd1dd0pd3_ih112oh56kh7sh2dh0ph3_iw112ow56kw7sw2dw0pw3,9.0
END
CALL
onednn_verbose,exec,cpu,reorder,jit:uni,undef,src dst,,,64x3x7x7x7,0.5
onednn_verbose,exec,cpu,convolution,jit:avx512_core,forward_inference,src,attr,alg:convolution_direct,mb16_ic3oc64_id16od16kd7sd1dd0pd3_ih112oh56kh7sh2dh0ph3_iw112ow56kw7sw2dw0pw3,10.0
onednn_verbose,exec,cpu,pooling_v2,jit:avx512_core,forward_inference,src dst,,alg:pooling_max,mb16ic64_id16od8kd3sd2dd0pd1_ih56oh28kh3sh2dh0ph1_iw56ow28kw3sw2dw0pw1,2.0
onednn_verbose,exec,cpu,convolution,jit_1x1:avx512_core,forward_inference,src,attr,alg:convolution_direct,mb16_ic64oc256_id8od8kd1sd1dd0pd0_ih28oh28kh1sh1dh0ph0_iw28ow28kw1sw1dw0pw0,3.0
onednn_verbose,exec,cpu,reorder,jit:uni,undef,src dst,,,mb16ic3id16ih112iw112,1.0
onednn_verbose,exec,cpu,convolution,jit:avx512_core,forward_inference,src,attr,alg:convolution_direct,mb16_ic512oc512_id1od1kd1sd1dd0pd0_ih7oh4kh3sh2dh0ph1_iw7ow4kw3sw2dw0pw1,4.0
END
WALLS [1.0, 0.05]
"""


def test_the_verbose_log_of_each_call_by_stage_and_kind():
    calls, walls = lp.parse_jittor(VERBOSE, 112)
    assert walls == [0.05] and len(calls) == 1            # the warm-up call dropped
    got = {k: round(v * 1e3, 6) for k, v in calls[0].items()}
    assert got == {("all", "weight reorder"): 0.5, ("stem", "convolution"): 10.0, ("stem", "pooling"): 2.0,
                   ("layer1", "convolution"): 3.0, ("stem", "reorder"): 1.0, ("layer4", "convolution"): 4.0}


def test_openvino_nodes_by_stage_part_and_kind():
    assert lp.stage_of_node("/cten/resnet/resnet.6/resnet.6.3/conv2/Conv/WithoutBiases") == "layer3"
    assert lp.stage_of_node("/cten/resnet/resnet.0/Conv") == "stem"
    assert lp.part_of_node("/cten/a_resnet/a_resnet.4/conv1/Conv") == "audio ResNet"
    assert lp.part_of_node("/cten/resnet/resnet.4/Add") == "3D ResNet"
    assert lp.part_of_node("/cten/ta_net/fc/Gemm") == "the rest (non-local blocks, attention, head)"
    assert lp.node_kind("Convolution") == "convolution" and lp.node_kind("Reorder") == "reorder"


def test_the_table_sets_the_two_side_by_side():
    calls, walls = lp.parse_jittor(VERBOSE, 112)
    node = "/cten/resnet/resnet.0/Conv/WithoutBiases"
    openvino = {"backbone": [[(node, "Convolution", "brgconv_avx512_f32", 0.005),
                              ("/cten/resnet/resnet.7/resnet.7.0/conv1/Conv", "Convolution", "brgconv_avx512_f32", 0.002)]],
                "model": [[(node, "Convolution", "x", 0.005), ("/cten/a_resnet/a_resnet.0/Conv", "Convolution", "x", 0.001)]]}
    s = lp.summarise(calls, walls, openvino)
    assert s["stages"]["stem"]["convolution"] == {"jittor": pytest.approx(0.010), "openvino": pytest.approx(0.005)}
    assert s["jittor_onednn_s"] == pytest.approx(0.0205) and s["jittor_outside_onednn_s"] == pytest.approx(0.0295)
    assert s["openvino_parts_s"] == {"3D ResNet": pytest.approx(0.005), "audio ResNet": pytest.approx(0.001)}
    text = lp.render({"description": "test", "summary": s})
    assert "| stem | convolution | 10.0 | 5.0 | 2.00 |" in text
    assert "brgconv_avx512_f32" in text
