// kiln.h and kiln_tools.h compile as C++ (g++ -std=c++17 -Wall -Wextra -Werror) and its
// calls link from C++: the header has an extern "C" guard and no construct
// that C++ rejects.
#include <kiln.h>
#include <kiln_tools.h>

#include <cstdio>
#include <string>

static void collect(void *user, const char *text)
{
    static_cast<std::string *>(user)->append(text);
}

int main()
{
    static_assert(KILN_VERSION_MAJOR >= 0, "version macros");
    std::string summary;
    kiln_model *m = nullptr;
    if (kiln_model_parse("[input]\nshape = 4\n[linear]\nout = 2\n", "cxx", &m) != KILN_OK) {
        std::fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    kiln_model_summary(m, collect, &summary);
    kiln_train_options o;
    kiln_train_options_init(&o);
    kiln_model_free(m);
    std::printf("kiln %s from C++: summary of %zu bytes, options of %zu bytes\n", kiln_version(),
                summary.size(), o.size);
    return summary.find("linear") != std::string::npos ? 0 : 1;
}
