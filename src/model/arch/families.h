// One entry per family file in this directory; registry.cpp lists them.
#pragma once

#include "model/arch.h"

namespace nanoserve::arch {

const ArchFamily& llama();

}  // namespace nanoserve::arch
