/*
 * execenv.c -- the exec family and posix_spawn: keep LD_PRELOAD and AX_* in
 * the child's environment.  Everything here works on the caller's stack only
 * (vfork children): the new environment lives in VLAs of the function that
 * calls exec.
 */
#include "ax_internal.h"

static size_t env_count(char *const *envp)
{
    size_t n = 0;
    if (envp)
        while (envp[n])
            n++;
    return n;
}

static int has_prefix(const char *s, const char *name)
{
    size_t n = strlen(name);
    return strncmp(s, name, n) == 0 && s[n] == '=';
}

static size_t env_ld_cap(char *const *envp)
{
    size_t n = (cfg.preload_entry ? strlen(cfg.preload_entry) : 0) + 8;
    for (size_t i = 0; envp && envp[i]; i++)
        if (has_prefix(envp[i], "LD_PRELOAD"))
            n += strlen(envp[i]);
    return n;
}

/* out: env_count(envp) + N_SAVED_ENV + 2 slots; ld: env_ld_cap(envp) bytes */
static char *const *fix_env(char *const *envp, char **out, char *ld)
{
    if (!cfg.enabled || !cfg.preload_entry)
        return envp;
    const char *base = strrchr(cfg.self_path, '/');
    base = base ? base + 1 : cfg.self_path;
    int present[N_SAVED_ENV] = {0};
    int have_ld = 0, changed = 0;
    size_t n = 0;
    for (size_t i = 0; envp && envp[i]; i++) {
        char *e = envp[i];
        if (has_prefix(e, "LD_PRELOAD")) {
            if (have_ld)
                continue;
            have_ld = 1;
            if (!strstr(e, base)) {
                const char *v = e + strlen("LD_PRELOAD=");
                strcpy(ld, cfg.preload_entry);
                if (*v) {
                    strcat(ld, ":");
                    strcat(ld, v);
                }
                e = ld;
                changed = 1;
            }
        }
        for (int k = 0; k < N_SAVED_ENV; k++)
            if (has_prefix(e, saved_env_names[k]))
                present[k] = 1;
        out[n++] = e;
    }
    if (!have_ld) {
        strcpy(ld, cfg.preload_entry);
        out[n++] = ld;
        changed = 1;
    }
    for (int k = 0; k < N_SAVED_ENV; k++)
        if (!present[k] && cfg.saved_env[k]) {
            out[n++] = cfg.saved_env[k];
            changed = 1;
        }
    out[n] = NULL;
    return changed ? out : envp;
}

#define WITH_ENV(envp, fixed, call)                                  \
    do {                                                             \
        char *const *env_in_ = (envp);                               \
        char *slots_[env_count(env_in_) + N_SAVED_ENV + 2];          \
        char ldbuf_[env_ld_cap(env_in_)];                            \
        char *const *fixed = fix_env(env_in_, slots_, ldbuf_);       \
        return call;                                                 \
    } while (0)

int h_execve(const char *path, char *const argv[], char *const envp[])
{
    NEED(execve);
    WITH_ENV(envp, env, R.execve(path, argv, env));
}

int h_execvpe(const char *file, char *const argv[], char *const envp[])
{
    NEED(execvpe);
    WITH_ENV(envp, env, R.execvpe(file, argv, env));
}

int h_posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                  const posix_spawnattr_t *attr, char *const argv[], char *const envp[], int p)
{
    ax_init();
    if (p) {
        if (!R.posix_spawnp)
            return ENOSYS;
        WITH_ENV(envp, env, R.posix_spawnp(pid, path, fa, attr, argv, env));
    }
    if (!R.posix_spawn)
        return ENOSYS;
    WITH_ENV(envp, env, R.posix_spawn(pid, path, fa, attr, argv, env));
}
