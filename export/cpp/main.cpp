// adpolicy_run: scores with an exported adpolicy graph, libtorch only (no Python).
//
//   adpolicy_run MODEL.pt INPUTS.pt [OUTPUTS.pt]
//
// MODEL.pt is the artifact's TorchScript graph. INPUTS.pt holds the graph inputs as Python
// saved them, `torch.save([tensor, ...], path)`, in the manifest's input order (presence
// last). Prints "scores B P", then one line of P scores per ad; OUTPUTS.pt, when given,
// receives every output (scores, modality_scores, measurements) as a pickled tuple.
#include <torch/script.h>
#include <torch/serialize.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + path);
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<c10::IValue> load_inputs(const std::string& path) {
  const c10::IValue saved = torch::pickle_load(read_bytes(path));
  std::vector<c10::IValue> inputs;
  if (saved.isList()) {
    for (const c10::IValue& item : saved.toListRef()) {
      inputs.push_back(item);
    }
  } else if (saved.isTuple()) {
    for (const c10::IValue& item : saved.toTupleRef().elements()) {
      inputs.push_back(item);
    }
  } else {
    throw std::runtime_error(path + ": expected a list of tensors saved by torch.save");
  }
  return inputs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: adpolicy_run MODEL.pt INPUTS.pt [OUTPUTS.pt]\n";
    return 2;
  }
  try {
    torch::jit::script::Module graph = torch::jit::load(argv[1]);
    graph.eval();
    const std::vector<c10::IValue> inputs = load_inputs(argv[2]);
    c10::InferenceMode guard;
    const c10::IValue result = graph.forward(inputs);
    const auto& outputs = result.toTupleRef().elements();
    const at::Tensor scores = outputs.at(0).toTensor().to(at::kFloat).contiguous();
    std::printf("scores %lld %lld\n", static_cast<long long>(scores.size(0)),
                static_cast<long long>(scores.size(1)));
    const auto rows = scores.accessor<float, 2>();
    for (int64_t i = 0; i < scores.size(0); ++i) {
      for (int64_t j = 0; j < scores.size(1); ++j) {
        std::printf(j ? " %.9g" : "%.9g", static_cast<double>(rows[i][j]));
      }
      std::printf("\n");
    }
    if (argc == 4) {
      const std::vector<char> data = torch::pickle_save(result);
      std::ofstream(argv[3], std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
    }
  } catch (const std::exception& err) {
    std::cerr << "adpolicy_run: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
