// A task on its way to a worker: see batch_task.hpp.
#include "runner/engine/batch_task.hpp"

#include "protocol/json_codec.hpp"

namespace authrun::runner {

std::string id_json(const BatchTask& task) { return task.id_text.empty() ? protocol::dump_json(task.id) : task.id_text; }

}  // namespace authrun::runner
